-- Statements of maintenance: the rescuer and the pruner.

-- name: rescue
-- Returns to the queue the claims of walhook processes that hold no session
-- any more (killed, crashed, cut off; each process keeps its LISTEN session
-- open under the application_name 'walhook:<id>'), and every claim whose
-- lease lapsed, this process's own included (a claim it lost track of).
-- A claim younger than the grace ($2: the lease minus the grace, in ms, so
-- that next_attempt_at, the claim's end, tells its age) is left alone: a
-- process that has just started may claim before its LISTEN session shows.
-- No index leads to claimed rows: this scans the queue, which holds only
-- work in progress, and runs when a session went away or every 15 seconds.
UPDATE {{schema}}.queue q SET claimed_by = NULL, next_attempt_at = now()
WHERE q.claimed_by IS NOT NULL AND q.status = 'pending'
  AND (q.next_attempt_at < now()
       OR (q.claimed_by <> $1 AND q.next_attempt_at < now() + $2::bigint * interval '1 millisecond'
           AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                           WHERE a.application_name = 'walhook:' || q.claimed_by)));

-- name: sessions
-- The walhook processes connected to the database, by their LISTEN sessions.
SELECT substr(application_name, 9) FROM pg_stat_activity WHERE application_name LIKE 'walhook:%';

-- name: prune
-- Deletes up to $2 events committed more than $1 ms ago that have no
-- delivery left in the queue (all delivered), with their attempts.
WITH old AS (
    SELECT e.id FROM {{schema}}.event_log e
    WHERE e.committed_at < now() - $1::bigint * interval '1 millisecond'
      AND NOT EXISTS (SELECT 1 FROM {{schema}}.queue q
                      WHERE q.user_id = e.user_id AND q.commit_lsn = e.commit_lsn AND q.seq = e.seq)
    LIMIT $2
), attempts AS (
    DELETE FROM {{schema}}.delivery_attempts a USING old WHERE a.event_id = old.id
)
DELETE FROM {{schema}}.event_log e USING old WHERE e.id = old.id;

-- name: vacuum_queue
-- Every delivery passes through the queue, so it churns faster than
-- autovacuum, which visits a database once a minute, keeps up with: a dead
-- row left for a minute at 15,000 deliveries/s is a million. Vacuumed this
-- often it stays a few pages, and so do its indexes. It does not cut the
-- empty tail pages (the table's vacuum_truncate, migration 0006).
VACUUM (SKIP_LOCKED) {{schema}}.queue;
