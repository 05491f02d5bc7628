-- Statements of the operator's commands: status and replay.

-- name: status
-- Per endpoint: pending and failed deliveries, the oldest pending one's age,
-- and the endpoint's state, since when and why.
SELECT coalesce(q.endpoint, s.endpoint), coalesce(q.pending, 0), coalesce(q.failed, 0), coalesce(q.oldest, 0),
    coalesce(s.state, 'enabled'), s.since, coalesce(s.reason, '')
FROM (
    SELECT endpoint,
        count(*) FILTER (WHERE status = 'pending') AS pending,
        count(*) FILTER (WHERE status = 'failed') AS failed,
        extract(epoch FROM now() - min(queued_at) FILTER (WHERE status = 'pending'))::float8 AS oldest
    FROM {{schema}}.queue GROUP BY endpoint
) q
FULL JOIN {{schema}}.endpoint_state s ON s.endpoint = q.endpoint
ORDER BY 1;

-- name: replay
-- Puts the selected deliveries back in the queue, waiting ('infinity')
-- until rehead decides which pending delivery of each user comes first,
-- with a fresh max_attempts and max_age budget. A null argument does not
-- filter: $1 event id, $2 endpoint, $3 status, $4 committed at or after.
-- Deliveries being attempted right now are left alone, and so are those
-- of erased events: their body is gone (the caller holds erase_lock).
WITH sel AS (
    SELECT d.user_id, d.endpoint, d.commit_lsn, d.seq, d.event_id, d.attempts FROM {{schema}}.deliveries d
    WHERE d.claimed_by IS NULL
      AND NOT EXISTS (SELECT 1 FROM {{schema}}.event_log e WHERE e.id = d.event_id AND e.erased_at IS NOT NULL)
      AND ($1::text IS NULL OR d.event_id = $1) AND ($2::text IS NULL OR d.endpoint = $2)
      AND ($3::text IS NULL OR d.status = $3)
      AND ($4::timestamptz IS NULL OR EXISTS (SELECT 1 FROM {{schema}}.event_log e
                                              WHERE e.id = d.event_id AND e.committed_at >= $4))
)
INSERT INTO {{schema}}.queue AS q (user_id, endpoint, commit_lsn, seq, event_id, attempts, attempts_base, next_attempt_at)
SELECT user_id, endpoint, commit_lsn, seq, event_id, attempts, attempts, 'infinity' FROM sel
ON CONFLICT (user_id, endpoint, commit_lsn, seq) DO UPDATE
    SET status = 'pending', attempts_base = q.attempts, next_attempt_at = 'infinity', queued_at = now()
    WHERE q.claimed_by IS NULL
RETURNING q.user_id, q.endpoint;

-- name: rehead
-- Decides again, for the given users and endpoints, which pending delivery
-- is first (due) and which wait behind it.
UPDATE {{schema}}.queue d SET next_attempt_at = CASE
        WHEN EXISTS (SELECT 1 FROM {{schema}}.queue p
            WHERE p.user_id = d.user_id AND p.endpoint = d.endpoint AND p.status = 'pending'
              AND (p.commit_lsn, p.seq) < (d.commit_lsn, d.seq)) THEN 'infinity'
        WHEN d.next_attempt_at = 'infinity' THEN now()
        ELSE d.next_attempt_at END
FROM (SELECT DISTINCT * FROM unnest($1::text[], $2::text[]) AS u(user_id, endpoint)) u
WHERE d.user_id = u.user_id AND d.endpoint = u.endpoint AND d.status = 'pending' AND d.claimed_by IS NULL;
