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
	claimDue     string
	record       string
	promoteNext  string
	requeue      string
	rehead       string
	park         string
	release      string
	rescue       string
	prune        string
}

// earlierPending is true while an earlier event of the same user to the
// same endpoint as the row alias is still pending: the per-user order of
// SPEC §4. Such a delivery waits with next_attempt_at = 'infinity' until
// the one before it leaves 'pending', which promotes it.
//
// With lock, FOR SHARE makes a concurrent outcome that is delivering the
// earlier one commit first, so that a fresh delivery is never left waiting
// behind a delivered one. (Not where the same statement updates the
// earlier rows: a row the current command changed cannot be locked and
// would be skipped.)
func earlierPending(alias string, lock bool) string {
	sql := `EXISTS (SELECT 1 FROM S.deliveries p
		WHERE p.user_id = ` + alias + `.user_id AND p.endpoint = ` + alias + `.endpoint AND p.status = 'pending'
		  AND (p.commit_lsn, p.seq) < (` + alias + `.commit_lsn, ` + alias + `.seq)`
	if lock {
		sql += " FOR SHARE"
	}
	return sql + ")"
}

func newQueries(schema string) queries {
	q := pgx.Identifier{schema}.Sanitize()
	s := func(sql string) string {
		sql = strings.ReplaceAll(sql, "EARLIER_PENDING", earlierPending("d", false))
		return strings.ReplaceAll(sql, "S.", q+".")
	}
	return queries{
		schema:  q,
		channel: "walhook_" + schema,
		insertEvents: s(`INSERT INTO S.events (id, commit_lsn, seq, type, user_id, committed_at, body)
			SELECT * FROM unnest($1::text[], $2::text[]::pg_lsn[], $3::int[], $4::text[], $5::text[], $6::timestamptz[], $7::text[])
			ON CONFLICT (id) DO NOTHING`),
		// Fresh deliveries are inserted due at once if they are the first
		// pending one of their user (per endpoint), else waiting; the first
		// $7 due ones are claimed by this process, so that they go to the
		// workers without being read back or polled for. An earlier event
		// of the same batch counts only if it is new: after a crash the
		// stream replays events that may be stored and delivered already.
		insertDelivs: s(`WITH f AS (
				SELECT f.*, NOT EXISTS (SELECT 1 FROM S.deliveries x
					WHERE x.event_id = f.event_id AND x.endpoint = f.endpoint) AS new
				FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]::pg_lsn[], $5::int[])
					WITH ORDINALITY AS f(event_id, endpoint, user_id, commit_lsn, seq, ord)
			), w AS (
				SELECT f.*, coalesce(bool_or(f.new) OVER (PARTITION BY f.user_id, f.endpoint ORDER BY f.ord
					ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), false) AS behind_new
				FROM f
			), h AS (
				SELECT w.*, NOT w.behind_new AND NOT ` + earlierPending("w", true) + ` AS head
				FROM w WHERE w.new
			), c AS (
				SELECT h.*, h.head AND count(*) FILTER (WHERE h.head) OVER (ORDER BY h.ord ROWS UNBOUNDED PRECEDING) <= $7 AS mine
				FROM h
			)
			INSERT INTO S.deliveries (event_id, endpoint, user_id, commit_lsn, seq, claimed_by, next_attempt_at)
			SELECT event_id, endpoint, user_id, commit_lsn, seq, CASE WHEN mine THEN $6 END,
				CASE WHEN mine THEN now() + $8::bigint * interval '1 millisecond' WHEN head THEN now() ELSE 'infinity' END
			FROM c
			ON CONFLICT (event_id, endpoint) DO NOTHING
			RETURNING event_id, endpoint, user_id, claimed_by IS NOT NULL`),
		// No filter on endpoint: it would let the planner pick another
		// index than the due one. Deliveries to endpoints this process does
		// not know are parked (see park).
		claimDue: s(`WITH due AS (
				SELECT d.event_id, d.endpoint FROM S.deliveries d
				WHERE d.status = 'pending' AND d.next_attempt_at <= now()
				ORDER BY d.next_attempt_at
				LIMIT $2
				FOR UPDATE OF d SKIP LOCKED
			)
			UPDATE S.deliveries d SET claimed_by = $1, next_attempt_at = now() + $3::bigint * interval '1 millisecond'
			FROM due WHERE d.event_id = due.event_id AND d.endpoint = due.endpoint
			RETURNING d.event_id, d.endpoint, d.user_id, d.attempts, d.attempts_base, d.queued_at,
				(SELECT e.body FROM S.events e WHERE e.id = d.event_id),
				(SELECT e.committed_at FROM S.events e WHERE e.id = d.event_id)`),
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
				-- IS NOT DISTINCT FROM: not indexable on purpose, so that the
				-- rows are found by primary key, not by a scan of the claims.
				FROM o WHERE d.event_id = o.event_id AND d.endpoint = o.endpoint
				  AND d.claimed_by IS NOT DISTINCT FROM $1 AND d.status IS NOT DISTINCT FROM 'pending'
				RETURNING d.event_id, d.endpoint, d.attempts
			)
			INSERT INTO S.delivery_attempts (event_id, endpoint, attempt, attempted_at, duration_ms, status_code, error, response_body)
			SELECT o.event_id, o.endpoint, upd.attempts, o.attempted_at, o.duration_ms, o.status_code, o.error, o.response_body
			FROM o JOIN upd USING (event_id, endpoint)`),
		// After deliveries left 'pending', the next pending delivery of each
		// of their users becomes due. A separate statement from record, so
		// that it sees deliveries captured while record waited for locks.
		promoteNext: s(`UPDATE S.deliveries d SET next_attempt_at = now()
			FROM (SELECT DISTINCT * FROM unnest($1::text[], $2::text[]) AS u(user_id, endpoint)) u,
			LATERAL (
				SELECT p.event_id, p.next_attempt_at FROM S.deliveries p
				WHERE p.user_id = u.user_id AND p.endpoint = u.endpoint AND p.status = 'pending'
				ORDER BY p.commit_lsn, p.seq
				LIMIT 1
			) nxt
			WHERE d.event_id = nxt.event_id AND d.endpoint = u.endpoint AND nxt.next_attempt_at = 'infinity'`),
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
		park: s(`UPDATE S.deliveries SET claimed_by = NULL, next_attempt_at = now() + interval '1 minute'
			WHERE claimed_by = $1 AND (event_id, endpoint) IN (SELECT * FROM unnest($2::text[], $3::text[]))`),
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
