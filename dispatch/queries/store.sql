-- Statements of the store (Write). {{schema}} is the quoted side schema.

-- name: store
-- Stores a batch of events and one pending delivery per event and
-- endpoint that wants it ($8, $9), in one statement: one start-up, one
-- snapshot. Events stored before (a replay of the stream after a crash)
-- are skipped, with their deliveries: only the events this statement
-- inserts (ev) get any. NOT EXISTS rather than ON CONFLICT: a speculative
-- insertion writes one more WAL record per row. Two stores of the same
-- event at once (a killed process's last statement still running) make
-- one wait on the id and fail with a unique violation if the other
-- commits; it runs again, with a snapshot that sees the other's events
-- and deliveries, and skips them.
-- A fresh delivery is due at once if it is the first pending one of its
-- user and endpoint, else it waits ('infinity'); the first $11 due ones
-- are claimed for this process ($10, lease $12 ms), so that the senders
-- get them with the bodies in hand, without a poll and without reading
-- them back. A delivery to an endpoint this process knows disabled ($13)
-- waits too: enabling it decides again (rehead_bound and after) once every
-- process knows. FOR SHARE on an earlier pending delivery makes an outcome
-- that is settling it right now commit first, and the check then finds it
-- settled (see the package doc, per-user order).
-- Returns one row per delivery stored, each with the count of events
-- stored; a single row of NULLs but that count if there is none.
WITH ev AS (
    INSERT INTO {{schema}}.event_log (id, commit_lsn, seq, type, user_id, committed_at, body)
    SELECT * FROM unnest($1::text[], $2::text[]::pg_lsn[], $3::int[], $4::text[], $5::text[], $6::timestamptz[], $7::text[])
        AS x(id, commit_lsn, seq, type, user_id, committed_at, body)
    WHERE NOT EXISTS (SELECT 1 FROM {{schema}}.event_log e WHERE e.id = x.id)
    RETURNING id, user_id, commit_lsn, seq
), f AS (
    SELECT ev.id, ev.user_id, ev.commit_lsn, ev.seq, d.endpoint, d.ord,
        row_number() OVER (PARTITION BY ev.user_id, d.endpoint ORDER BY d.ord) = 1 AS first_in_batch
    FROM unnest($8::text[], $9::text[]) WITH ORDINALITY AS d(event_id, endpoint, ord)
    JOIN ev ON ev.id = d.event_id
), h AS (
    SELECT f.*, f.first_in_batch AND f.endpoint <> ALL($13::text[]) AND NOT EXISTS (
        SELECT 1 FROM {{schema}}.queue p
        WHERE p.user_id = f.user_id AND p.endpoint = f.endpoint AND p.status = 'pending'
          AND (p.commit_lsn, p.seq) < (f.commit_lsn, f.seq)
        FOR SHARE) AS head
    FROM f
), c AS (
    SELECT h.*, h.head AND count(*) FILTER (WHERE h.head) OVER (ORDER BY h.ord ROWS UNBOUNDED PRECEDING) <= $11 AS mine
    FROM h
), q AS (
    INSERT INTO {{schema}}.queue (user_id, endpoint, commit_lsn, seq, event_id, claimed_by, next_attempt_at)
    SELECT user_id, endpoint, commit_lsn, seq, id, CASE WHEN mine THEN $10 END,
        CASE WHEN mine THEN now() + $12::bigint * interval '1 millisecond' WHEN head THEN now() ELSE 'infinity' END
    FROM c
    RETURNING event_id, endpoint, claimed_by IS NOT NULL AS mine, next_attempt_at <> 'infinity' AS due
)
SELECT n.stored, q.event_id, q.endpoint, q.mine, q.due
FROM (SELECT count(*) AS stored FROM ev) n LEFT JOIN q ON true;

-- name: notify
-- Tells the other walhook processes that due work waits unclaimed; the
-- payload names the sender, which ignores its own notifications. Sent only
-- when this process could not take all fresh work itself: NOTIFY takes a
-- lock that serialises every committing transaction that notified.
SELECT pg_notify($1, $2);
