-- The side schema: one row per change, per delivery and per HTTP attempt.
-- {{schema}} is replaced by the quoted schema name.

CREATE TABLE {{schema}}.events (
    id           text        PRIMARY KEY,       -- "<commit LSN>-<index>" (docs/webhooks.md, event ids)
    commit_lsn   pg_lsn      NOT NULL,          -- with seq: commit order
    seq          int         NOT NULL,
    type         text        NOT NULL,
    user_id      text        NOT NULL,
    committed_at timestamptz NOT NULL,
    body         text        NOT NULL,          -- the exact bytes sent on every attempt
    payload      jsonb       GENERATED ALWAYS AS (body::jsonb) STORED,
    captured_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_committed_at_idx ON {{schema}}.events (committed_at);
CREATE INDEX events_user_idx ON {{schema}}.events (user_id, commit_lsn, seq);

CREATE TABLE {{schema}}.deliveries (
    event_id        text        NOT NULL,
    endpoint        text        NOT NULL,
    user_id         text        NOT NULL,       -- copied from events: the claim orders by it
    commit_lsn      pg_lsn      NOT NULL,
    seq             int         NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        int         NOT NULL DEFAULT 0,
    attempts_base   int         NOT NULL DEFAULT 0, -- attempts when last replayed: max_attempts counts from here
    -- When the delivery may be attempted; 'infinity' while an earlier
    -- delivery of the same user to the same endpoint is pending (docs/webhooks.md, per-user order).
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    queued_at       timestamptz NOT NULL DEFAULT now(), -- captured or replayed: max_age counts from here
    delivered_at    timestamptz,
    claimed_by      text,                       -- the walhook process attempting it now
    last_error      text,
    PRIMARY KEY (event_id, endpoint)
);
CREATE INDEX deliveries_due_idx ON {{schema}}.deliveries (next_attempt_at)
    WHERE status = 'pending';
-- user_id first: the claim filters on endpoint and must not be tempted by it.
CREATE INDEX deliveries_user_order_idx ON {{schema}}.deliveries (user_id, endpoint, commit_lsn, seq)
    WHERE status = 'pending';
CREATE INDEX deliveries_failed_idx ON {{schema}}.deliveries (endpoint, queued_at)
    WHERE status = 'failed';
-- A queue table churns: keep its statistics and visibility fresh so that
-- the claim's plan stays an index scan.
ALTER TABLE {{schema}}.deliveries SET (
    autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0);
CREATE INDEX deliveries_claimed_idx ON {{schema}}.deliveries (claimed_by)
    WHERE claimed_by IS NOT NULL;

CREATE TABLE {{schema}}.delivery_attempts (
    event_id      text        NOT NULL,
    endpoint      text        NOT NULL,
    attempt       int         NOT NULL,         -- 1, 2, ... (keeps counting across replays)
    attempted_at  timestamptz NOT NULL,
    duration_ms   int         NOT NULL,
    status_code   int,                          -- null where no answer came
    error         text,                         -- null on 2xx
    response_body text                          -- first 1 KiB at most
);
CREATE INDEX delivery_attempts_event_idx ON {{schema}}.delivery_attempts (event_id, endpoint, attempt);
CREATE INDEX delivery_attempts_time_idx ON {{schema}}.delivery_attempts (attempted_at);
