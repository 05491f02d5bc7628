-- Statements of the store (Write). {{schema}} is the quoted side schema.

-- name: store_events
-- Stores a batch of events. Events stored before (a replay of the stream
-- after a crash) are skipped. NOT EXISTS rather than ON CONFLICT: a
-- speculative insertion writes one more WAL record per row. Two stores of
-- the same event at once (a killed process's last statement still running)
-- make one fail with a unique violation, and it runs again.
INSERT INTO {{schema}}.event_log (id, commit_lsn, seq, type, user_id, committed_at, body)
SELECT * FROM unnest($1::text[], $2::text[]::pg_lsn[], $3::int[], $4::text[], $5::text[], $6::timestamptz[], $7::text[])
    AS x(id, commit_lsn, seq, type, user_id, committed_at, body)
WHERE NOT EXISTS (SELECT 1 FROM {{schema}}.event_log e WHERE e.id = x.id);

-- name: store_deliveries
-- Right after store_events, in the same transaction: inserts the
-- deliveries of the events it stored (xmin is this transaction), none for
-- skipped ones. A statement of its own, so that its snapshot sees what a
-- concurrent store of the same events committed while store_events waited
-- on their ids (a killed process's last statement can still be running).
-- A fresh delivery is due at once if it is the first pending one of its
-- user and endpoint, else it waits ('infinity'); the first $4 due ones are
-- claimed for this process ($3, lease $5 ms), so that the senders get them
-- with the bodies in hand, without a poll and without reading them back.
-- A delivery to an endpoint this process knows disabled ($6) waits too:
-- enabling it decides again (rehead_bound and after) once every process knows.
-- FOR SHARE on an earlier pending delivery makes an outcome that is
-- settling it right now commit first (see the package doc, per-user order).
WITH f AS (
    SELECT e.id, e.user_id, e.commit_lsn, e.seq, x.endpoint, x.ord,
        row_number() OVER (PARTITION BY e.user_id, x.endpoint ORDER BY x.ord) = 1 AS first_in_batch
    FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(event_id, endpoint, ord)
    JOIN {{schema}}.event_log e ON e.id = x.event_id
    WHERE e.xmin = pg_current_xact_id()::xid
), h AS (
    SELECT f.*, f.first_in_batch AND f.endpoint <> ALL($6::text[]) AND NOT EXISTS (
        SELECT 1 FROM {{schema}}.queue p
        WHERE p.user_id = f.user_id AND p.endpoint = f.endpoint AND p.status = 'pending'
          AND (p.commit_lsn, p.seq) < (f.commit_lsn, f.seq)
        FOR SHARE) AS head
    FROM f
), c AS (
    SELECT h.*, h.head AND count(*) FILTER (WHERE h.head) OVER (ORDER BY h.ord ROWS UNBOUNDED PRECEDING) <= $4 AS mine
    FROM h
)
INSERT INTO {{schema}}.queue (user_id, endpoint, commit_lsn, seq, event_id, claimed_by, next_attempt_at)
SELECT user_id, endpoint, commit_lsn, seq, id, CASE WHEN mine THEN $3 END,
    CASE WHEN mine THEN now() + $5::bigint * interval '1 millisecond' WHEN head THEN now() ELSE 'infinity' END
FROM c
RETURNING event_id, endpoint, claimed_by IS NOT NULL AS mine, next_attempt_at <> 'infinity' AS due;

-- name: notify
-- Tells the other walhook processes that due work waits unclaimed; the
-- payload names the sender, which ignores its own notifications. Sent only
-- when this process could not take all fresh work itself: NOTIFY takes a
-- lock that serialises every committing transaction that notified.
SELECT pg_notify($1, $2);
