-- Statements of the store (Write). {{schema}} is the quoted side schema.

-- name: store
-- Stores a batch of events and their deliveries in one statement. Events
-- stored before (a replay of the stream after a crash) are skipped, and so
-- are their deliveries. A fresh delivery is due at once if it is the first
-- pending one of its user and endpoint, else it waits ('infinity'); the
-- first $11 due ones are claimed for this process ($10, lease $12 ms), so
-- that the workers get them with the bodies in hand, without a poll and
-- without reading them back. FOR SHARE on an earlier pending delivery makes
-- an outcome that is settling it right now commit first (see the package
-- doc, per-user order).
WITH ev AS (
    INSERT INTO {{schema}}.event_log (id, commit_lsn, seq, type, user_id, committed_at, body)
    SELECT * FROM unnest($1::text[], $2::text[]::pg_lsn[], $3::int[], $4::text[], $5::text[], $6::timestamptz[], $7::text[])
    ON CONFLICT (id) DO NOTHING
    RETURNING id, commit_lsn, seq, user_id
), f AS (
    SELECT ev.*, x.endpoint, x.ord,
        row_number() OVER (PARTITION BY ev.user_id, x.endpoint ORDER BY x.ord) = 1 AS first_in_batch
    FROM unnest($8::text[], $9::text[]) WITH ORDINALITY AS x(event_id, endpoint, ord)
    JOIN ev ON ev.id = x.event_id
), h AS (
    SELECT f.*, f.first_in_batch AND NOT EXISTS (
        SELECT 1 FROM {{schema}}.queue p
        WHERE p.user_id = f.user_id AND p.endpoint = f.endpoint AND p.status = 'pending'
          AND (p.commit_lsn, p.seq) < (f.commit_lsn, f.seq)
        FOR SHARE) AS head
    FROM f
), c AS (
    SELECT h.*, h.head AND count(*) FILTER (WHERE h.head) OVER (ORDER BY h.ord ROWS UNBOUNDED PRECEDING) <= $11 AS mine
    FROM h
), ins AS (
    INSERT INTO {{schema}}.queue (user_id, endpoint, commit_lsn, seq, event_id, claimed_by, next_attempt_at)
    SELECT user_id, endpoint, commit_lsn, seq, id, CASE WHEN mine THEN $10 END,
        CASE WHEN mine THEN now() + $12::bigint * interval '1 millisecond' WHEN head THEN now() ELSE 'infinity' END
    FROM c
    ON CONFLICT DO NOTHING
    RETURNING event_id, endpoint, claimed_by IS NOT NULL AS mine, next_attempt_at <> 'infinity' AS due
)
-- One row counts the new events; then one per delivery inserted.
SELECT NULL::text, NULL::text, false, false, (SELECT count(*) FROM ev)
UNION ALL
SELECT event_id, endpoint, mine, due, NULL FROM ins;

-- name: notify
-- Tells the other walhook processes that due work waits unclaimed; the
-- payload names the sender, which ignores its own notifications. Sent only
-- when this process could not take all fresh work itself: NOTIFY takes a
-- lock that serialises every committing transaction that notified.
SELECT pg_notify($1, $2);
