-- The side schema stored for the fewest writes per event (docs/side-schema.md).
-- events, deliveries and delivery_attempts stay the SQL interface; events and
-- deliveries become views over:
--   event_log          append-only, the body as text, one index (the id)
--   queue              only the deliveries not delivered (pending or failed):
--                      a delivery that succeeds is deleted, never rewritten
--   delivery_attempts  append-only, one row per HTTP attempt; a delivered
--                      delivery is derived from its last attempt
-- An existing side schema is converted in place, keeping its data.

CREATE TABLE {{schema}}.event_log (
    id           text        PRIMARY KEY,       -- "<commit LSN>-<index>"
    commit_lsn   pg_lsn      NOT NULL,          -- with seq: commit order
    seq          int         NOT NULL,
    type         text        NOT NULL,
    user_id      text        NOT NULL,
    committed_at timestamptz NOT NULL,
    body         text        NOT NULL,          -- the exact bytes sent on every attempt
    captured_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO {{schema}}.event_log (id, commit_lsn, seq, type, user_id, committed_at, body, captured_at)
    SELECT id, commit_lsn, seq, type, user_id, committed_at, body, captured_at FROM {{schema}}.events
    ORDER BY commit_lsn, seq;
-- No index on committed_at: even a BRIN index writes a WAL record for most
-- inserts (each extends its range), and the pruner's scan stops early, at
-- the oldest rows, which come first in an append-only heap.

-- Deliveries not delivered yet. The primary key is the per-user order:
-- the claim-free checks "is an earlier delivery of this user pending" and
-- "which pending delivery of this user comes next" walk it.
CREATE TABLE {{schema}}.queue (
    user_id         text        NOT NULL,
    endpoint        text        NOT NULL,
    commit_lsn      pg_lsn      NOT NULL,
    seq             int         NOT NULL,
    event_id        text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'failed')),
    attempts        int         NOT NULL DEFAULT 0,
    attempts_base   int         NOT NULL DEFAULT 0, -- attempts when last replayed: max_attempts counts from here
    -- When the delivery may be attempted; 'infinity' while an earlier
    -- delivery of the same user to the same endpoint is pending; while
    -- claimed, when the claim lapses.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    queued_at       timestamptz NOT NULL DEFAULT now(), -- captured or replayed: max_age counts from here
    claimed_by      text,                               -- the walhook process attempting it now
    last_error      text,
    last_attempt_at timestamptz,
    PRIMARY KEY (user_id, endpoint, commit_lsn, seq)
);
INSERT INTO {{schema}}.queue (user_id, endpoint, commit_lsn, seq, event_id, status, attempts, attempts_base,
        next_attempt_at, queued_at, claimed_by, last_error, last_attempt_at)
    SELECT d.user_id, d.endpoint, d.commit_lsn, d.seq, d.event_id, d.status, d.attempts, d.attempts_base,
        d.next_attempt_at, d.queued_at, d.claimed_by, d.last_error,
        (SELECT max(a.attempted_at) FROM {{schema}}.delivery_attempts a
         WHERE a.event_id = d.event_id AND a.endpoint = d.endpoint)
    FROM {{schema}}.deliveries d WHERE d.status <> 'delivered';
-- What the producer may claim. A claimed delivery has no entry: a fresh one
-- claimed as it is stored writes no entry at all, and the rescuer, not this
-- index, finds claims that lapsed or whose process died.
CREATE INDEX queue_due_idx ON {{schema}}.queue (next_attempt_at) WHERE status = 'pending' AND claimed_by IS NULL;
-- Rows come and go all the time: vacuum and analyze it often, so that it
-- stays small and its plans stay index scans.
ALTER TABLE {{schema}}.queue SET (
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 5000,
    autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 20000,
    autovacuum_analyze_scale_factor = 0.05, autovacuum_analyze_threshold = 5000,
    autovacuum_vacuum_cost_delay = 0, fillfactor = 80);

-- A delivered delivery is known by its last attempt, which succeeded. One
-- delivered without a recorded success (set by hand) gets one, marked.
INSERT INTO {{schema}}.delivery_attempts (event_id, endpoint, attempt, attempted_at, duration_ms, status_code, error, response_body)
    SELECT d.event_id, d.endpoint, greatest(d.attempts, coalesce(l.attempt, 0) + 1), coalesce(d.delivered_at, d.queued_at),
        0, NULL, NULL, 'walhook: delivered before 0002 without a recorded successful attempt'
    FROM {{schema}}.deliveries d
    LEFT JOIN LATERAL (SELECT a.attempt, a.error FROM {{schema}}.delivery_attempts a
        WHERE a.event_id = d.event_id AND a.endpoint = d.endpoint ORDER BY a.attempt DESC LIMIT 1) l ON true
    WHERE d.status = 'delivered' AND (l.attempt IS NULL OR l.error IS NOT NULL);

DROP TABLE {{schema}}.deliveries;
DROP TABLE {{schema}}.events;
-- Nothing on the hot path reads attempts by time.
DROP INDEX {{schema}}.delivery_attempts_time_idx;

CREATE VIEW {{schema}}.events AS
    SELECT id, commit_lsn, seq, type, user_id, committed_at, body::jsonb AS payload, body, captured_at
    FROM {{schema}}.event_log;

-- Deliveries not delivered are queue rows; a delivered one is the last
-- attempt of its (event, endpoint), a success, with no queue row (a replay
-- puts it back in the queue). Every lookup here can go by an index (the
-- event's id, the attempts' (event_id, endpoint, attempt), the queue's key),
-- so that no plan made on stale statistics turns quadratic; only retries
-- (attempt > 1) can make a success not the last.
CREATE VIEW {{schema}}.deliveries AS
    SELECT q.event_id, q.endpoint, q.status, q.attempts, q.next_attempt_at, NULL::timestamptz AS delivered_at,
        q.user_id, q.commit_lsn, q.seq, q.queued_at, q.last_error, q.claimed_by, q.last_attempt_at, q.attempts_base
    FROM {{schema}}.queue q
    UNION ALL
    SELECT a.event_id, a.endpoint, 'delivered', a.attempt, a.attempted_at, a.attempted_at,
        e.user_id, e.commit_lsn, e.seq, e.captured_at, NULL::text, NULL::text, a.attempted_at, NULL::int
    FROM {{schema}}.delivery_attempts a
    JOIN {{schema}}.event_log e ON e.id = a.event_id
    WHERE a.error IS NULL
      AND NOT EXISTS (SELECT 1 FROM {{schema}}.delivery_attempts b
                      WHERE b.attempt > 1 AND b.event_id = a.event_id AND b.endpoint = a.endpoint
                        AND b.attempt > a.attempt)
      AND NOT EXISTS (SELECT 1 FROM {{schema}}.queue q
                      WHERE q.user_id = e.user_id AND q.endpoint = a.endpoint
                        AND q.commit_lsn = e.commit_lsn AND q.seq = e.seq);
