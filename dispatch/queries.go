package dispatch

import (
	"strings"

	"github.com/jackc/pgx/v5"
)

// queries holds the statements of one side schema, with its name quoted in.
type queries struct {
	schema       string // quoted
	channel      string // NOTIFY channel, unquoted
	insertEvents string
	insertDelivs string
	promoteFresh string
	claimDue     string
	record       string
	promoteNext  string
	requeue      string
	rehead       string
	release      string
	rescue       string
	prune        string
}

// earlierPending is true while an earlier event of the same user to the
// same endpoint is still pending: the per-user order of SPEC §4. Such a
// delivery waits with next_attempt_at = 'infinity' until the one before it
// leaves 'pending', which promotes it.
const earlierPending = `EXISTS (SELECT 1 FROM S.deliveries p
	WHERE p.user_id = d.user_id AND p.endpoint = d.endpoint AND p.status = 'pending'
	  AND (p.commit_lsn, p.seq) < (d.commit_lsn, d.seq)`

// earlierPendingLocked is earlierPending for fresh deliveries: FOR SHARE
// makes a concurrent outcome that is delivering the earlier one commit
// first, so that the fresh one is never left waiting behind a delivered
// one. (Not usable where the same statement updates the earlier rows: a
// row the current command changed cannot be locked and would be skipped.)
const earlierPendingLocked = earlierPending + " FOR SHARE)"

func newQueries(schema string) queries {
	q := pgx.Identifier{schema}.Sanitize()
	s := func(sql string) string {
		sql = strings.ReplaceAll(sql, "EARLIER_PENDING_LOCKED", earlierPendingLocked)
		sql = strings.ReplaceAll(sql, "EARLIER_PENDING", earlierPending+")")
		return strings.ReplaceAll(sql, "S.", q+".")
	}
	return queries{
		schema:  q,
		channel: "walhook_" + schema,
		insertEvents: s(`INSERT INTO S.events (id, commit_lsn, seq, type, user_id, committed_at, body)
			SELECT * FROM unnest($1::text[], $2::text[]::pg_lsn[], $3::int[], $4::text[], $5::text[], $6::timestamptz[], $7::text[])
			ON CONFLICT (id) DO NOTHING`),
		// Fresh deliveries start waiting; promoteFresh, the next statement
		// of the same transaction, makes the heads due.
		insertDelivs: s(`INSERT INTO S.deliveries (event_id, endpoint, user_id, commit_lsn, seq, next_attempt_at)
			SELECT *, 'infinity'::timestamptz FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]::pg_lsn[], $5::int[])
			ON CONFLICT (event_id, endpoint) DO NOTHING`),
		// The first $4 heads are claimed by this process at once, so that
		// they go to the workers without being read back or polled for.
		promoteFresh: s(`WITH fresh AS (
				SELECT * FROM unnest($2::text[], $3::text[]) AS f(event_id, endpoint)
			), heads AS (
				-- The window's sort reads every head before the UPDATE
				-- changes a row, so the locking check sees no row of its own.
				SELECT d.event_id, d.endpoint, row_number() OVER (ORDER BY d.commit_lsn, d.seq) AS n
				FROM S.deliveries d JOIN fresh USING (event_id, endpoint)
				WHERE d.status = 'pending' AND d.next_attempt_at = 'infinity' AND NOT EARLIER_PENDING_LOCKED
			)
			UPDATE S.deliveries d SET
				claimed_by = CASE WHEN h.n <= $4 THEN $1 END,
				next_attempt_at = CASE WHEN h.n <= $4 THEN now() + $5::bigint * interval '1 millisecond' ELSE now() END
			FROM heads h WHERE d.event_id = h.event_id AND d.endpoint = h.endpoint
			RETURNING d.event_id, d.endpoint, d.user_id, d.claimed_by IS NOT NULL`),
		claimDue: s(`WITH due AS (
				SELECT d.event_id, d.endpoint FROM S.deliveries d
				WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND d.endpoint = ANY($3)
				ORDER BY d.next_attempt_at
				LIMIT $2
				FOR UPDATE OF d SKIP LOCKED
			)
			UPDATE S.deliveries d SET claimed_by = $1, next_attempt_at = now() + $4::bigint * interval '1 millisecond'
			FROM due WHERE d.event_id = due.event_id AND d.endpoint = due.endpoint
			RETURNING d.event_id, d.endpoint, d.user_id, d.attempts, d.attempts_base, d.queued_at,
				(SELECT e.body FROM S.events e WHERE e.id = d.event_id)`),
		// One round trip records a batch of attempts: the delivery's new
		// state, and one delivery_attempts row per attempt. A delivery whose
		// claim was lost (lease expired, rescued) is left to its new owner.
		record: s(`WITH o AS (
				SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[],
					$7::int[], $8::int[], $9::text[], $10::text[])
				AS o(event_id, endpoint, status, next_attempt_at, attempted_at, duration_ms, status_code, error, response_body)
			), upd AS (
				UPDATE S.deliveries d SET status = o.status, attempts = d.attempts + 1,
					-- A retry waits behind an earlier delivery replayed meanwhile.
					next_attempt_at = CASE WHEN o.next_attempt_at IS NULL THEN d.next_attempt_at
						WHEN EARLIER_PENDING THEN 'infinity' ELSE o.next_attempt_at END,
					delivered_at = CASE WHEN o.status = 'delivered' THEN o.attempted_at END,
					last_error = o.error, claimed_by = NULL
				FROM o WHERE d.event_id = o.event_id AND d.endpoint = o.endpoint
				  AND d.claimed_by = $1 AND d.status = 'pending'
				RETURNING d.event_id, d.endpoint, d.attempts
			)
			INSERT INTO S.delivery_attempts (event_id, endpoint, attempt, attempted_at, duration_ms, status_code, error, response_body)
			SELECT o.event_id, o.endpoint, upd.attempts, o.attempted_at, o.duration_ms, o.status_code, o.error, o.response_body
			FROM o JOIN upd USING (event_id, endpoint)`),
		// After deliveries left 'pending', the next pending delivery of each
		// of their users becomes due. A separate statement from record, so
		// that it sees deliveries captured while record waited for locks.
		promoteNext: s(`UPDATE S.deliveries d SET next_attempt_at = now()
			FROM (
				SELECT DISTINCT ON (p.user_id, p.endpoint) p.event_id, p.endpoint, p.next_attempt_at
				FROM S.deliveries p
				JOIN (SELECT DISTINCT * FROM unnest($1::text[], $2::text[]) AS u(user_id, endpoint)) u
				  ON p.user_id = u.user_id AND p.endpoint = u.endpoint
				WHERE p.status = 'pending'
				ORDER BY p.user_id, p.endpoint, p.commit_lsn, p.seq
			) nxt
			WHERE d.event_id = nxt.event_id AND d.endpoint = nxt.endpoint AND nxt.next_attempt_at = 'infinity'`),
		// Replayed deliveries wait until rehead decides, per user, which
		// pending delivery is first. Those being attempted right now are
		// left alone: their outcome is on its way.
		requeue: s(`UPDATE S.deliveries d SET status = 'pending', attempts_base = attempts,
				next_attempt_at = 'infinity', queued_at = now(), delivered_at = NULL
			WHERE d.claimed_by IS NULL AND WHERE_FILTER
			RETURNING d.user_id, d.endpoint`),
		rehead: s(`UPDATE S.deliveries d SET next_attempt_at = CASE
				WHEN EARLIER_PENDING THEN 'infinity'
				WHEN d.next_attempt_at = 'infinity' THEN now()
				ELSE d.next_attempt_at END
			FROM (SELECT DISTINCT * FROM unnest($1::text[], $2::text[]) AS u(user_id, endpoint)) u
			WHERE d.user_id = u.user_id AND d.endpoint = u.endpoint
			  AND d.status = 'pending' AND d.claimed_by IS NULL`),
		release: s(`UPDATE S.deliveries SET claimed_by = NULL, next_attempt_at = now()
			WHERE claimed_by = $1 AND status = 'pending'`),
		// A process that died holds no session any more: its claims return.
		rescue: s(`UPDATE S.deliveries d SET claimed_by = NULL, next_attempt_at = now()
			WHERE d.claimed_by IS NOT NULL AND d.claimed_by <> $1 AND d.status = 'pending'
			  AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.application_name = 'walhook:' || d.claimed_by)`),
		prune: s(`WITH old AS (
				SELECT e.id FROM S.events e
				WHERE e.committed_at < now() - $1::bigint * interval '1 millisecond'
				  AND NOT EXISTS (SELECT 1 FROM S.deliveries d WHERE d.event_id = e.id AND d.status <> 'delivered')
				LIMIT $2
			), attempts AS (
				DELETE FROM S.delivery_attempts a USING old WHERE a.event_id = old.id
			), delivs AS (
				DELETE FROM S.deliveries d USING old WHERE d.event_id = old.id
			)
			DELETE FROM S.events e USING old WHERE e.id = old.id`),
	}
}
