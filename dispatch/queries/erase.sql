-- Statements of data care: erasure and the pruning of failed deliveries.

-- name: erase_lock
-- Taken by every erasing transaction and by replay: a replay must not put
-- back in the queue a delivery whose event an erasure is emptying, nor an
-- erasure empty one a replay is putting back. Both are rare and short.
SELECT pg_advisory_xact_lock(hashtextextended('walhook erase ' || $1, 0));

-- name: erase_due
-- Users whose latest deleted event not yet erased is final everywhere (no
-- delivery of it pending), up to $1 of them, with that event's position:
-- their events up to it are to be erased. By event_log_deleted_idx.
SELECT DISTINCT ON (e.user_id) e.user_id, e.commit_lsn::text, e.seq
FROM {{schema}}.event_log e
WHERE e.type LIKE '%.deleted' AND e.erased_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM {{schema}}.queue q
                  WHERE q.user_id = e.user_id AND q.commit_lsn = e.commit_lsn AND q.seq = e.seq
                    AND q.status = 'pending')
  AND NOT EXISTS (SELECT 1 FROM {{schema}}.erasure_waits w WHERE w.event_id = e.id)
ORDER BY e.user_id, e.commit_lsn DESC, e.seq DESC
LIMIT $1;

-- name: erase_blocks
-- The pages of event_log (no row when it is empty): an erasure reads them
-- range by range.
SELECT pg_relation_size(tableoid) / current_setting('block_size')::bigint FROM {{schema}}.event_log LIMIT 1;

-- name: erase_range
-- Erases, among the events on pages [$4, $5) of event_log, those of users
-- $1 up to ($2, $3) in commit order: the body goes, and the response
-- bodies of their attempts (a receiver may echo the payload). An event
-- with a delivery still pending keeps its body and waits in erasure_waits.
-- Backfills whose -where quotes a string value of an erased payload lose
-- it: a running one holds its condition in memory, and cannot be resumed
-- once interrupted ('(erased)' is no valid condition, on purpose). Returns per user the events erased and left waiting.
-- event_log has no index by user (it would cost a write per event), so
-- the caller walks it in ranges, each a statement with its own deadline.
WITH u AS (
    SELECT * FROM unnest($1::text[], $2::text[]::pg_lsn[], $3::int[]) AS u(user_id, up_to_lsn, up_to_seq)
), r AS MATERIALIZED ( -- the range read once, whatever the number of users
    SELECT e.id, e.user_id, e.commit_lsn, e.seq, e.body FROM {{schema}}.event_log e
    WHERE e.ctid >= format('(%s,0)', $4::bigint)::tid AND e.ctid < format('(%s,0)', $5::bigint)::tid
      AND e.erased_at IS NULL AND e.user_id = ANY ($1::text[])
), hit AS (
    SELECT r.id, r.user_id, r.body, EXISTS (SELECT 1 FROM {{schema}}.queue q
            WHERE q.user_id = r.user_id AND q.commit_lsn = r.commit_lsn AND q.seq = r.seq
              AND q.status = 'pending') AS pending
    FROM r JOIN u ON u.user_id = r.user_id AND (r.commit_lsn, r.seq) <= (u.up_to_lsn, u.up_to_seq)
), erased AS (
    UPDATE {{schema}}.event_log e SET body = NULL, erased_at = now()
    FROM hit WHERE e.id = hit.id AND NOT hit.pending
    RETURNING e.id
), attempts AS (
    UPDATE {{schema}}.delivery_attempts a SET response_body = NULL
    FROM erased WHERE a.event_id = erased.id AND a.response_body IS NOT NULL
), waits AS (
    INSERT INTO {{schema}}.erasure_waits (event_id) SELECT id FROM hit WHERE pending
    ON CONFLICT DO NOTHING
), vals AS (
    SELECT DISTINCT v #>> '{}' AS s
    FROM hit, LATERAL (SELECT jsonb_path_query(hit.body::jsonb -> 'data', 'strict $.**')
                       UNION ALL SELECT jsonb_path_query(hit.body::jsonb -> 'previous', 'strict $.**')) AS x(v)
    WHERE jsonb_typeof(v) = 'string' AND length(v #>> '{}') >= 3
), backfills AS (
    UPDATE {{schema}}.backfills b SET where_sql = '(erased)'
    WHERE EXISTS (SELECT 1 FROM vals WHERE strpos(b.where_sql, vals.s) > 0)
)
SELECT user_id, count(*) FILTER (WHERE NOT pending), count(*) FILTER (WHERE pending)
FROM hit GROUP BY user_id;

-- name: erase_waiting
-- Erases up to $1 waiting events none of whose deliveries is pending any
-- more, as erase_range does, and forgets waits whose event was pruned.
WITH ready AS (
    SELECT w.event_id FROM {{schema}}.erasure_waits w
    LEFT JOIN {{schema}}.event_log e ON e.id = w.event_id
    WHERE e.id IS NULL OR NOT EXISTS (SELECT 1 FROM {{schema}}.queue q
            WHERE q.user_id = e.user_id AND q.commit_lsn = e.commit_lsn AND q.seq = e.seq
              AND q.status = 'pending')
    LIMIT $1
), erased AS (
    UPDATE {{schema}}.event_log e SET body = NULL, erased_at = now()
    FROM ready WHERE e.id = ready.event_id
    RETURNING e.id
), attempts AS (
    UPDATE {{schema}}.delivery_attempts a SET response_body = NULL
    FROM erased WHERE a.event_id = erased.id AND a.response_body IS NOT NULL
)
DELETE FROM {{schema}}.erasure_waits w USING ready WHERE w.event_id = ready.event_id;

-- name: prune_failed
-- Deletes up to $2 failed deliveries whose last attempt (or, with none,
-- their queueing) is more than $1 ms ago, with their attempts, and returns
-- how many. Their event goes with the next prune if nothing else holds it.
WITH gone AS (
    DELETE FROM {{schema}}.queue q
    WHERE (q.user_id, q.endpoint, q.commit_lsn, q.seq) IN (
            SELECT user_id, endpoint, commit_lsn, seq FROM {{schema}}.queue
            WHERE status = 'failed' AND coalesce(last_attempt_at, queued_at) < now() - $1::bigint * interval '1 millisecond'
            LIMIT $2)
      AND q.status = 'failed' -- rechecked on a row a replay just changed
    RETURNING q.event_id, q.endpoint
), attempts AS (
    DELETE FROM {{schema}}.delivery_attempts a USING gone
    WHERE a.event_id = gone.event_id AND a.endpoint = gone.endpoint
)
SELECT count(*) FROM gone;
