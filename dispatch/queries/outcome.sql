-- Statements of the completer, which records attempts' outcomes.

-- name: record_outcomes
-- Records a batch of attempts made by process $1 in one statement: a
-- delivered delivery leaves the queue (a delete writes no index entry), a
-- retried or failed one is rewritten, and every attempt gets its
-- delivery_attempts row, numbered from the queue row. A delivery whose claim
-- was lost meanwhile (lease expired, rescued) is left to its new owner and
-- its attempt is not recorded. So is one whose attempts count moved past
-- the one it was claimed with ($13): the outcome was recorded already, by a
-- write that committed although its answer was lost, and this process may
-- have claimed the delivery again since. IS NOT DISTINCT FROM is not
-- indexable, on purpose: the rows are found by primary key, never through
-- the claimed index.
WITH o AS (
    SELECT * FROM unnest($2::text[], $3::text[], $4::text[]::pg_lsn[], $5::int[], $6::text[], $7::timestamptz[],
        $8::timestamptz[], $9::int[], $10::int[], $11::text[], $12::text[], $13::int[])
    AS o(user_id, endpoint, commit_lsn, seq, status, next_attempt_at, attempted_at, duration_ms, status_code, error, response_body,
        claimed_attempts)
), delivered AS (
    DELETE FROM {{schema}}.queue q USING o
    WHERE o.status = 'delivered'
      AND q.user_id = o.user_id AND q.endpoint = o.endpoint AND q.commit_lsn = o.commit_lsn AND q.seq = o.seq
      AND q.claimed_by IS NOT DISTINCT FROM $1 AND q.status IS NOT DISTINCT FROM 'pending'
      AND q.attempts = o.claimed_attempts
    RETURNING q.user_id, q.endpoint, q.commit_lsn, q.seq, q.event_id, q.attempts + 1 AS attempt
), rewritten AS (
    UPDATE {{schema}}.queue q SET status = o.status, attempts = q.attempts + 1,
        -- A retry waits behind an earlier delivery replayed meanwhile.
        next_attempt_at = CASE WHEN o.next_attempt_at IS NULL THEN q.next_attempt_at
            WHEN EXISTS (SELECT 1 FROM {{schema}}.queue p
                WHERE p.user_id = q.user_id AND p.endpoint = q.endpoint AND p.status = 'pending'
                  AND (p.commit_lsn, p.seq) < (q.commit_lsn, q.seq)) THEN 'infinity'
            ELSE o.next_attempt_at END,
        last_error = o.error, last_attempt_at = o.attempted_at, claimed_by = NULL
    FROM o
    WHERE o.status <> 'delivered'
      AND q.user_id = o.user_id AND q.endpoint = o.endpoint AND q.commit_lsn = o.commit_lsn AND q.seq = o.seq
      AND q.claimed_by IS NOT DISTINCT FROM $1 AND q.status IS NOT DISTINCT FROM 'pending'
      AND q.attempts = o.claimed_attempts
    RETURNING q.user_id, q.endpoint, q.commit_lsn, q.seq, q.event_id, q.attempts AS attempt
)
INSERT INTO {{schema}}.delivery_attempts (event_id, endpoint, attempt, attempted_at, duration_ms, status_code, error, response_body)
SELECT r.event_id, r.endpoint, r.attempt, o.attempted_at, o.duration_ms, o.status_code, o.error, o.response_body
FROM o JOIN (SELECT * FROM delivered UNION ALL SELECT * FROM rewritten) r USING (user_id, endpoint, commit_lsn, seq);

-- name: promote_next
-- After deliveries left 'pending', the next pending delivery of each of
-- their users (per endpoint) becomes due. A statement of its own after
-- record_outcomes, so that its snapshot sees deliveries stored while
-- record_outcomes waited for locks.
UPDATE {{schema}}.queue q SET next_attempt_at = now()
FROM (SELECT DISTINCT * FROM unnest($1::text[], $2::text[]) AS u(user_id, endpoint)) u,
LATERAL (
    SELECT p.commit_lsn, p.seq, p.next_attempt_at FROM {{schema}}.queue p
    WHERE p.user_id = u.user_id AND p.endpoint = u.endpoint AND p.status = 'pending'
    ORDER BY p.commit_lsn, p.seq
    LIMIT 1
) nxt
WHERE q.user_id = u.user_id AND q.endpoint = u.endpoint AND q.commit_lsn = nxt.commit_lsn AND q.seq = nxt.seq
  AND nxt.next_attempt_at = 'infinity';
