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
	claimFresh   string
	claimDue     string
	record       string
	release      string
	rescue       string
	prune        string
}

// waitsForEarlier is true while an earlier event of the same user to the
// same endpoint is still pending: the per-user order of SPEC §4.
const waitsForEarlier = `EXISTS (SELECT 1 FROM S.deliveries p
	WHERE p.endpoint = d.endpoint AND p.user_id = d.user_id AND p.status = 'pending'
	  AND (p.commit_lsn, p.seq) < (d.commit_lsn, d.seq))`

func newQueries(schema string) queries {
	q := pgx.Identifier{schema}.Sanitize()
	s := func(sql string) string {
		sql = strings.ReplaceAll(sql, "WAITS_FOR_EARLIER", waitsForEarlier)
		return strings.ReplaceAll(sql, "S.", q+".")
	}
	return queries{
		schema:  q,
		channel: "walhook_" + schema,
		insertEvents: s(`INSERT INTO S.events (id, commit_lsn, seq, type, user_id, committed_at, body)
			SELECT * FROM unnest($1::text[], $2::text[]::pg_lsn[], $3::int[], $4::text[], $5::text[], $6::timestamptz[], $7::text[])
			ON CONFLICT (id) DO NOTHING`),
		insertDelivs: s(`INSERT INTO S.deliveries (event_id, endpoint, user_id, commit_lsn, seq)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]::pg_lsn[], $5::int[])
			ON CONFLICT (event_id, endpoint) DO NOTHING`),
		// Fresh deliveries are claimed in the transaction that stores them,
		// so that they go to the workers without being read again.
		claimFresh: s(`WITH fresh AS (
				SELECT * FROM unnest($2::text[], $3::text[]) AS f(event_id, endpoint)
			), due AS (
				SELECT d.event_id, d.endpoint FROM S.deliveries d JOIN fresh USING (event_id, endpoint)
				WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND NOT WAITS_FOR_EARLIER
				ORDER BY d.commit_lsn, d.seq
				LIMIT $4
				FOR UPDATE OF d SKIP LOCKED
			)
			UPDATE S.deliveries d SET claimed_by = $1, next_attempt_at = now() + $5::bigint * interval '1 millisecond'
			FROM due WHERE d.event_id = due.event_id AND d.endpoint = due.endpoint
			RETURNING d.event_id, d.endpoint, d.attempts, d.attempts_base, d.queued_at`),
		claimDue: s(`WITH due AS (
				SELECT d.event_id, d.endpoint FROM S.deliveries d
				WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND d.endpoint = ANY($3)
				  AND NOT WAITS_FOR_EARLIER
				ORDER BY d.next_attempt_at
				LIMIT $2
				FOR UPDATE OF d SKIP LOCKED
			)
			UPDATE S.deliveries d SET claimed_by = $1, next_attempt_at = now() + $4::bigint * interval '1 millisecond'
			FROM due WHERE d.event_id = due.event_id AND d.endpoint = due.endpoint
			RETURNING d.event_id, d.endpoint, d.attempts, d.attempts_base, d.queued_at,
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
					next_attempt_at = coalesce(o.next_attempt_at, d.next_attempt_at),
					delivered_at = CASE WHEN o.status = 'delivered' THEN o.attempted_at END,
					last_error = o.error, claimed_by = NULL
				FROM o WHERE d.event_id = o.event_id AND d.endpoint = o.endpoint
				  AND d.claimed_by = $1 AND d.status = 'pending'
				RETURNING d.event_id, d.endpoint, d.attempts
			)
			INSERT INTO S.delivery_attempts (event_id, endpoint, attempt, attempted_at, duration_ms, status_code, error, response_body)
			SELECT o.event_id, o.endpoint, upd.attempts, o.attempted_at, o.duration_ms, o.status_code, o.error, o.response_body
			FROM o JOIN upd USING (event_id, endpoint)`),
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
