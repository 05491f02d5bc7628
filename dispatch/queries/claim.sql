-- Statements of the producer, which claims due deliveries.

-- name: claim_due
-- Claims up to $2 due deliveries for process $1 for $3 ms, oldest due
-- first, with the bodies. Deliveries to endpoints this process does not
-- know are parked (park). $4 are the endpoints known disabled: their
-- deliveries wait ('infinity'), and the few that became due meanwhile are
-- skipped until hold_disabled makes them wait; a filter, not a join, so
-- that the plan stays the due index.
WITH due AS (
    SELECT q.user_id, q.endpoint, q.commit_lsn, q.seq FROM {{schema}}.queue q
    WHERE q.status = 'pending' AND q.claimed_by IS NULL AND q.next_attempt_at <= now()
      AND q.endpoint <> ALL($4::text[])
    ORDER BY q.next_attempt_at
    LIMIT $2
    FOR UPDATE OF q SKIP LOCKED
)
UPDATE {{schema}}.queue q SET claimed_by = $1, next_attempt_at = now() + $3::bigint * interval '1 millisecond'
FROM due, {{schema}}.event_log e
WHERE q.user_id = due.user_id AND q.endpoint = due.endpoint AND q.commit_lsn = due.commit_lsn AND q.seq = due.seq
  AND e.id = q.event_id
RETURNING q.event_id, q.endpoint, q.user_id, q.commit_lsn::text, q.seq, q.attempts, q.attempts_base, q.queued_at,
    e.committed_at, e.body;

-- name: park
-- Puts back, for a minute, deliveries claimed by $1 to endpoints it does
-- not know: another process may know them, or the operator will replay or
-- delete them.
UPDATE {{schema}}.queue SET claimed_by = NULL, next_attempt_at = now() + interval '1 minute'
WHERE claimed_by = $1 AND (event_id, endpoint) IN (SELECT * FROM unnest($2::text[], $3::text[]));

-- name: release
-- Returns the claims of process $1 that it will not attempt (at shutdown).
UPDATE {{schema}}.queue SET claimed_by = NULL, next_attempt_at = now()
WHERE claimed_by = $1 AND status = 'pending';

-- name: claimed_by
-- The deliveries claimed by process $1, for reconcile: a claim whose
-- answer was lost left some that the process does not hold.
SELECT event_id, endpoint, user_id, commit_lsn::text, seq FROM {{schema}}.queue
WHERE claimed_by = $1 AND status = 'pending';
