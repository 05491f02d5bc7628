package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/walhook/walhook/dispatch/signature"
	"github.com/walhook/walhook/testenv"
)

// The fault cases share one way of proving that nothing was lost: a mixed
// workload whose every change to users is logged, in the same transaction,
// in changes_log (not in the publication), with the row as to_jsonb renders
// it and the transaction's xid. Nothing is recorded client side, so a
// commit whose outcome the client never heard of (a server crash, a killed
// connection) is judged by what the database holds. verify (verify_test
// helpers below) then matches the WAL's truth against walhook.events, and
// walhook.events against what the receivers got.

// faultSchema is the watched table, with columns of several renderings
// (numeric, arrays with odd elements, jsonb, large TOASTed text,
// timestamptz), REPLICA IDENTITY FULL so that deletes carry the whole row
// and updates carry previous, and the change log.
const faultSchema = `
CREATE TABLE public.users (
	id bigserial PRIMARY KEY,
	email text NOT NULL,
	name text,
	role text NOT NULL DEFAULT 'member',
	password_hash text,
	score numeric(10,2),
	tags text[],
	profile jsonb,
	bio text,
	rev int NOT NULL DEFAULT 0,
	last_seen_at timestamptz,
	created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE public.users REPLICA IDENTITY FULL;
CREATE TABLE public.changes_log (
	id bigserial PRIMARY KEY,
	xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
	user_id bigint NOT NULL,
	op text NOT NULL,
	row jsonb NOT NULL
);
CREATE EXTENSION IF NOT EXISTS pg_walinspect;
`

// faultEnv is one fault case's database and walhook configuration.
type faultEnv struct {
	db  *testenv.DB
	cfg string
	// startLSN is where the WAL that verify reads begins; a logical slot
	// that nobody consumes keeps it from being recycled until the database
	// is dropped.
	startLSN string
}

// newFaultEnv creates the schema in a new database (on cluster, or on the
// shared one if nil) and a config delivering to url, with password_hash
// excluded.
func newFaultEnv(t *testing.T, cluster *testenv.Cluster, url string, tweak func(*settings)) *faultEnv {
	t.Helper()
	var db *testenv.DB
	if cluster != nil {
		db = testenv.NewDBOn(t, cluster)
	} else {
		db = testenv.NewDB(t)
	}
	db.Exec(t, faultSchema)
	db.Exec(t, "SELECT pg_create_logical_replication_slot($1, 'test_decoding')", "hold_"+db.Name)
	s := settings{dsn: db.DSN, endpoints: []endpointSettings{{name: "crm", url: url}},
		source: "  exclude_columns: [password_hash]\n"}
	if tweak != nil {
		tweak(&s)
	}
	return &faultEnv{db: db, cfg: writeConfig(t, s), startLSN: currentLSN(t, db)}
}

// run starts walhook and waits until it streams from its slot.
func (e *faultEnv) run(t *testing.T) *proc {
	t.Helper()
	p := start(t, "run", "-config", e.cfg)
	waitSlotHolder(t, e.db, 0, time.Minute)
	return p
}

// changes is how many changes of users have committed.
func (e *faultEnv) changes(t *testing.T) int64 {
	return count(t, e.db, "SELECT count(*) FROM changes_log")
}

// settle waits until every committed change is an event and every delivery
// is delivered, then stops the given walhook processes with SIGTERM (so
// that no attempt is in flight while verify reads), and returns the number
// of changes.
func (e *faultEnv) settle(t *testing.T, procs ...*proc) int64 {
	t.Helper()
	for _, p := range procs {
		select {
		case <-p.done:
			t.Fatalf("walhook exited before the end (%v):\n%s", p.err, tail(p.out.String(), 4000))
		default:
		}
	}
	n := e.changes(t)
	begin := time.Now()
	// At least n: an event too many is for verify to explain.
	var events int64
	eventually(t, 3*time.Minute, fmt.Sprintf("%d changes captured", n), func() (bool, string) {
		if err := e.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM walhook.events").Scan(&events); err != nil {
			return false, err.Error()
		}
		return events >= n, fmt.Sprintf("%d events", events)
	})
	captured := time.Since(begin)
	// Every event stored is delivered, counting them again each time: the
	// event too many may arrive after the count above.
	eventually(t, 3*time.Minute, "every stored event delivered", func() (bool, string) {
		var delivered, other int64
		err := e.db.Pool.QueryRow(context.Background(), `SELECT
			(SELECT count(*) FROM walhook.events),
			count(*) FILTER (WHERE status = 'delivered'), count(*) FILTER (WHERE status <> 'delivered')
			FROM walhook.deliveries`).Scan(&events, &delivered, &other)
		if err != nil {
			return false, err.Error()
		}
		return delivered == events && other == 0, fmt.Sprintf("%d events, %d delivered, %d not", events, delivered, other)
	})
	t.Logf("settled %d changes: all captured after %.1fs, all delivered after %.1fs", n, captured.Seconds(), time.Since(begin).Seconds())
	for _, p := range procs {
		p.stop(t)
	}
	return n
}

// workloadOptions shape a workload.
type workloadOptions struct {
	sessions int           // concurrent sessions; default 4
	users    int           // users inserted before the sessions start; default 100
	pause    time.Duration // between one session's transactions
	// safe restricts the workload to email, name, password_hash, rev and
	// last_seen_at, the columns the ALTER TABLE case leaves alone.
	safe bool
}

// workload runs random transactions until stopped: mostly single changes,
// some of several changes (which may deadlock: they roll back, as rolled
// back transactions must emit nothing), some batches of inserts, some
// explicit rollbacks. Errors are expected while faults are injected; they
// are counted, and the truth is what committed.
type workload struct {
	db     *testenv.DB
	opts   workloadOptions
	maxID  atomic.Int64
	txs    atomic.Int64
	errs   atomic.Int64
	last   atomic.Pointer[string]
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var errRollback = errors.New("rolled back on purpose")

func startWorkload(t *testing.T, db *testenv.DB, o workloadOptions) *workload {
	t.Helper()
	if o.sessions == 0 {
		o.sessions = 4
	}
	if o.users == 0 {
		o.users = 100
	}
	w := &workload{db: db, opts: o}
	seed := uint64(time.Now().UnixNano())
	t.Logf("workload: %d sessions, %d users, seed %d", o.sessions, o.users, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	for done := 0; done < o.users; done += 10 {
		err := pgx.BeginFunc(context.Background(), db.Pool, func(tx pgx.Tx) error {
			for range min(10, o.users-done) {
				if err := w.insert(context.Background(), tx, rng); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("seed users: %v", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	for s := range o.sessions {
		rng := rand.New(rand.NewPCG(seed, uint64(s+1)))
		w.wg.Go(func() { w.session(ctx, rng) })
	}
	t.Cleanup(w.halt)
	return w
}

func (w *workload) halt() {
	w.cancel()
	w.wg.Wait()
}

// stop ends the workload and checks that it did some work.
func (w *workload) stop(t *testing.T) {
	t.Helper()
	w.halt()
	last := ""
	if p := w.last.Load(); p != nil {
		last = *p
	}
	t.Logf("workload: %d transactions committed or rolled back as planned, %d failed (last error: %s)", w.txs.Load(), w.errs.Load(), last)
	if w.txs.Load() == 0 {
		t.Fatalf("the workload committed nothing (last error: %s)", last)
	}
}

// waitMore waits until n more changes have committed than now.
func (w *workload) waitMore(t *testing.T, n int64) {
	t.Helper()
	target := count(t, w.db, "SELECT count(*) FROM changes_log") + n
	eventually(t, 2*time.Minute, fmt.Sprintf("%d changes committed", target), func() (bool, string) {
		var got int64
		if err := w.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM changes_log").Scan(&got); err != nil {
			return false, err.Error()
		}
		return got >= target, fmt.Sprint(got)
	})
}

// session runs transactions until ctx ends. A transaction is not
// cancelled with ctx: a COMMIT cut off by the client may still complete in
// the server after the test counted the changes; it runs to its end,
// bounded by a timeout of its own.
func (w *workload) session(ctx context.Context, rng *rand.Rand) {
	for ctx.Err() == nil {
		tctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		err := pgx.BeginFunc(tctx, w.db.Pool, func(tx pgx.Tx) error { return w.transaction(tctx, tx, rng) })
		cancel()
		switch {
		case err == nil || errors.Is(err, errRollback):
			w.txs.Add(1)
		default:
			w.errs.Add(1)
			msg := err.Error()
			w.last.Store(&msg)
			sleep(ctx, 20*time.Millisecond) // a server restarting: do not spin
		}
		sleep(ctx, w.opts.pause)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// transaction runs one random transaction's statements.
func (w *workload) transaction(ctx context.Context, tx pgx.Tx, rng *rand.Rand) error {
	r := rng.Float64()
	switch {
	case r < 0.65:
		return w.op(ctx, tx, rng)
	case r < 0.80:
		for range 2 + rng.IntN(4) {
			if err := w.op(ctx, tx, rng); err != nil {
				return err
			}
		}
		return nil
	case r < 0.85:
		return w.batch(ctx, tx, rng)
	default:
		for range 1 + rng.IntN(3) {
			if err := w.op(ctx, tx, rng); err != nil {
				return err
			}
		}
		return errRollback
	}
}

// logged wraps a statement on users that returns the changed rows: each
// becomes a changes_log row in the same statement. ORDER BY id keeps the
// log in the order a multi-row INSERT wrote the rows.
func logged(change, op string) string {
	return "WITH c AS (" + change + " RETURNING *) INSERT INTO changes_log (user_id, op, row) " +
		"SELECT id, '" + op + "', to_jsonb(c) FROM c ORDER BY id RETURNING user_id"
}

func (w *workload) exec(ctx context.Context, tx pgx.Tx, sql string, args ...any) error {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return err
	}
	for _, id := range ids {
		for {
			cur := w.maxID.Load()
			if id <= cur || w.maxID.CompareAndSwap(cur, id) {
				break
			}
		}
	}
	return nil
}

var (
	insertSQL = logged(`INSERT INTO users (email, name, password_hash, score, tags, profile, bio, last_seen_at)
		VALUES ($1, $2, $3, $4::numeric, $5::text[], $6::jsonb, $7, now() - $8::int * interval '1 ms')`, "insert")
	insertSafeSQL = logged(`INSERT INTO users (email, name, password_hash, score)
		VALUES ($1, $2, $3, round((random() * 1000)::numeric, 2))`, "insert")
	batchSQL = logged(`INSERT INTO users (email, name, password_hash, score)
		SELECT 'b' || $1::text || '-' || g || '@example.com', 'Batch ' || g, 'hash-' || g, g * 1.25
		FROM generate_series(1, $2::int) g`, "insert")
	deleteSQL = logged(`DELETE FROM users WHERE id = $1`, "delete")
)

// updates are the SET clauses an update picks from; each changes rev too,
// so that no update is a no-op (which would rightly emit nothing).
var updates = []struct {
	set  string
	safe bool
	val  func(*rand.Rand) any
}{
	{"name = $2", true, func(r *rand.Rand) any { return randName(r) }},
	{"email = $2", true, func(r *rand.Rand) any { return fmt.Sprintf("e%d@example.com", r.Int64()) }},
	{"password_hash = $2", true, func(r *rand.Rand) any { return fmt.Sprintf("hash-%x", r.Uint64()) }},
	{"last_seen_at = now() - $2::int * interval '1 ms'", true, func(r *rand.Rand) any { return r.IntN(1e9) }},
	{"score = $2::numeric", false, func(r *rand.Rand) any { return randScore(r) }},
	{"tags = $2::text[]", false, func(r *rand.Rand) any { return randTags(r) }},
	{"profile = $2::jsonb", false, func(r *rand.Rand) any { return randProfile(r) }},
	{"bio = $2", false, func(r *rand.Rand) any { return randBio(r) }},
}

func (w *workload) op(ctx context.Context, tx pgx.Tx, rng *rand.Rand) error {
	r := rng.Float64()
	switch {
	case r < 0.20:
		return w.insert(ctx, tx, rng)
	case r < 0.85:
		u := updates[rng.IntN(len(updates))]
		for w.opts.safe && !u.safe {
			u = updates[rng.IntN(len(updates))]
		}
		sql := logged("UPDATE users SET rev = rev + 1, "+u.set+" WHERE id = $1", "update")
		return w.exec(ctx, tx, sql, w.target(rng), u.val(rng))
	default:
		return w.exec(ctx, tx, deleteSQL, w.target(rng))
	}
}

// target picks one of the 150 most recent ids, most of them alive: the
// workload keeps acting on roughly 50 to 200 users.
func (w *workload) target(rng *rand.Rand) int64 {
	hi := w.maxID.Load()
	lo := max(1, hi-150)
	return lo + rng.Int64N(hi-lo+1)
}

func (w *workload) insert(ctx context.Context, tx pgx.Tx, rng *rand.Rand) error {
	email := fmt.Sprintf("u%x@example.com", rng.Uint64())
	if w.opts.safe {
		return w.exec(ctx, tx, insertSafeSQL, email, randName(rng), "hash")
	}
	return w.exec(ctx, tx, insertSQL, email, randName(rng), "hash", randScore(rng), randTags(rng),
		randProfile(rng), randBio(rng), rng.IntN(1e9))
}

func (w *workload) batch(ctx context.Context, tx pgx.Tx, rng *rand.Rand) error {
	return w.exec(ctx, tx, batchSQL, fmt.Sprintf("%x", rng.Uint64()), 10+rng.IntN(21))
}

// Values that test the rendering too: quotes, backslashes, control
// characters, non-ASCII, emoji, array elements that need quoting or are
// NULL or the string "NULL".
var names = []string{"Ada", `O"Brien`, `back\slash`, "Zoë", "李小龙", "🚀 rocket", "tab\there", "new\nline", "ctl\u0001x", "  spaced  ", ""}

func randName(r *rand.Rand) any {
	if r.IntN(10) == 0 {
		return nil
	}
	return fmt.Sprintf("%s %d", names[r.IntN(len(names))], r.IntN(1000))
}

func randScore(r *rand.Rand) any {
	if r.IntN(10) == 0 {
		return nil
	}
	return fmt.Sprintf("%d.%02d", r.IntN(100000)-50000, r.IntN(100))
}

var tagPool = []string{"a", "b,c", `q"uote`, "NULL", "", "sp ace", "ü", `{brace}`, `back\slash`}

func randTags(r *rand.Rand) any {
	if r.IntN(10) == 0 {
		return nil
	}
	tags := make([]*string, r.IntN(4))
	for i := range tags {
		if r.IntN(8) > 0 {
			s := tagPool[r.IntN(len(tagPool))]
			tags[i] = &s
		}
	}
	return tags
}

func randProfile(r *rand.Rand) any {
	if r.IntN(10) == 0 {
		return nil
	}
	nested, _ := json.Marshal(names[r.IntN(len(names))])
	return fmt.Sprintf(`{"plan": %q, "n": %d, "f": %d.5, "ok": %t, "nested": {"a": [1, "two", null, {"b": %s}]}}`,
		[]string{"free", "pro", "ete"}[r.IntN(3)], r.Int64N(1<<53), r.IntN(1000), r.IntN(2) == 0, nested)
}

// randBio is sometimes large and incompressible enough to be TOASTed out of
// line, so that updates leaving it alone carry it as "unchanged".
func randBio(r *rand.Rand) any {
	switch r.IntN(20) {
	case 0:
		return nil
	case 1:
		var b strings.Builder
		for b.Len() < 12000 {
			fmt.Fprintf(&b, "%016x", r.Uint64())
		}
		return b.String()
	}
	return fmt.Sprintf("bio %d", r.IntN(1e6))
}

// checkEventsSQL matches walhook.events against the change log, user by
// user in commit order (row locks serialise one user's changes, so the log's
// order is their commit order), and each event's id against the COMMIT
// record of its transaction read back from the WAL with pg_walinspect. It
// returns one row per problem.
const checkEventsSQL = `
WITH ev AS (
	SELECT id, commit_lsn, seq, type, user_id, committed_at, payload,
	       row_number() OVER (PARTITION BY user_id ORDER BY commit_lsn, seq) AS n
	FROM walhook.events
), ch AS (
	SELECT id AS cid, xid::xid AS xid, user_id::text AS user_id, op, row - 'password_hash' AS row,
	       lag(row - 'password_hash') OVER (PARTITION BY user_id ORDER BY id) AS prev,
	       row_number() OVER (PARTITION BY user_id ORDER BY id) AS n,
	       row_number() OVER (PARTITION BY xid ORDER BY id) - 1 AS seq
	FROM changes_log
), commits AS (
	SELECT xid, start_lsn FROM pg_get_wal_records_info($1::pg_lsn, pg_current_wal_flush_lsn())
	WHERE resource_manager = 'Transaction' AND record_type = 'COMMIT'
), j AS (
	SELECT coalesce(ev.user_id, ch.user_id) AS uid, ev.id, ev.commit_lsn, ev.seq, ev.type, ev.committed_at,
	       ev.payload, ch.cid, ch.op, ch.row, ch.prev, ch.seq AS cseq, ch.xid, c.start_lsn, wp.want_prev,
	       'user.' || CASE ch.op WHEN 'insert' THEN 'created' WHEN 'update' THEN 'updated' ELSE 'deleted' END AS want_type
	FROM ev FULL JOIN ch ON ev.user_id = ch.user_id AND ev.n = ch.n
	LEFT JOIN commits c ON c.xid = ch.xid
	-- previous: the old values of the columns whose value changed; a column
	-- renamed, dropped or retyped in between is not compared.
	LEFT JOIN LATERAL (
		SELECT coalesce(jsonb_object_agg(k, v), '{}') AS want_prev FROM jsonb_each(ch.prev) AS p(k, v)
		WHERE ch.row ? k AND ch.row->k <> v
		  AND (jsonb_typeof(ch.row->k) = jsonb_typeof(v) OR 'null' IN (jsonb_typeof(ch.row->k), jsonb_typeof(v)))
	) wp ON true
)
SELECT uid, coalesce(id, '-'), coalesce(cid, 0), problem FROM (
	SELECT uid, id, cid, CASE
		WHEN id IS NULL THEN 'LOST: no event for this committed ' || op
		WHEN cid IS NULL THEN 'event ' || type || ' matches no committed change'
		WHEN type <> want_type THEN 'type ' || type || ', want ' || want_type
		WHEN start_lsn IS NULL THEN 'no COMMIT record in the WAL for xid ' || xid
		WHEN id <> start_lsn::text || '-' || cseq THEN 'id, want ' || start_lsn::text || '-' || cseq
		WHEN commit_lsn <> start_lsn OR seq <> cseq THEN 'commit_lsn, seq columns disagree with the id'
		WHEN payload->>'id' IS DISTINCT FROM id OR payload->>'type' IS DISTINCT FROM type THEN 'payload id or type differ from the row'
		WHEN (payload->>'timestamp')::timestamptz IS DISTINCT FROM committed_at THEN 'payload timestamp ' || (payload->>'timestamp') || ' is not committed_at'
		WHEN payload->'data' IS DISTINCT FROM row THEN 'data ' || (payload->'data')::text || ', want ' || row::text
		WHEN op = 'update' AND prev IS NOT NULL AND payload->'previous' IS DISTINCT FROM want_prev
			THEN 'previous ' || coalesce((payload->'previous')::text, 'absent') || ', want ' || want_prev::text
		WHEN op <> 'update' AND payload ? 'previous' THEN 'previous on a ' || op
		WHEN EXISTS (SELECT 1 FROM jsonb_object_keys(payload) k WHERE k NOT IN ('id', 'type', 'timestamp', 'data', 'previous'))
			THEN 'unexpected keys in payload ' || payload::text
	END AS problem FROM j
) x WHERE problem IS NOT NULL ORDER BY uid, id`

// checkDeliveriesSQL finds deliveries not delivered, and deliveries whose
// attempts counter disagrees with their delivery_attempts rows.
const checkDeliveriesSQL = `
SELECT d.event_id, d.status, d.attempts, count(a.*),
	coalesce(bool_or(a.error IS NULL), false), coalesce(max(a.attempt), 0), d.claimed_by IS NOT NULL
FROM walhook.deliveries d LEFT JOIN walhook.delivery_attempts a USING (event_id, endpoint)
GROUP BY d.event_id, d.endpoint, d.status, d.attempts, d.claimed_by
HAVING d.status <> 'delivered' OR d.attempts <> count(a.*) OR max(a.attempt) <> d.attempts
	OR NOT bool_or(a.error IS NULL) OR d.claimed_by IS NOT NULL`

// verifyOptions say what a case may excuse.
type verifyOptions struct {
	// killed: a walhook process was killed, so requests it had sent may be
	// cut short and attempts it made may be unrecorded.
	killed bool
	// refused: the receiver refused connections for a while, so some
	// recorded attempts never reached it.
	refused bool
}

// verdict is what verify found.
type verdict struct {
	changes, events    int64
	requests, distinct int
	duplicates         int // requests beyond the first of each webhook-id
	staleDuplicates    int // a duplicate arriving after a later event of its user
	truncated          int // bodies cut short by a killed sender
	lost               int // changes with no event, events never received whole
	problems           int
}

// stored is an event as walhook.events holds it.
type stored struct {
	user string
	pos  int // position in commit order
	body string
}

// verify checks a settled case end to end: every committed change is
// exactly one event with the right id (from the WAL), type, data and
// previous; every event was received whole, signed, with the bytes stored,
// first arrivals of one user's events in commit order; every delivery is
// delivered, its attempts recorded; and what the receiver got agrees with
// the attempts walhook recorded.
func verify(t *testing.T, e *faultEnv, reqs []testenv.Request, o verifyOptions) verdict {
	t.Helper()
	ctx := context.Background()
	var v verdict
	v.changes = e.changes(t)
	v.events = count(t, e.db, "SELECT count(*) FROM walhook.events")
	report := func(format string, args ...any) {
		v.problems++
		if v.problems <= 20 {
			t.Errorf(format, args...)
		}
	}

	rows, err := e.db.Pool.Query(ctx, checkEventsSQL, e.startLSN)
	if err != nil {
		t.Fatalf("check events against the change log: %v", err)
	}
	for rows.Next() {
		var user, id, problem string
		var cid int64
		if err := rows.Scan(&user, &id, &cid, &problem); err != nil {
			t.Fatal(err)
		}
		if cid != 0 && id == "-" {
			v.lost++
		}
		report("user %s, event %s, change %d: %s", user, id, cid, problem)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("check events against the change log: %v", err)
	}

	rows, err = e.db.Pool.Query(ctx, checkDeliveriesSQL)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, status string
		var attempts, recorded, lastAttempt int64
		var succeeded, claimed bool
		if err := rows.Scan(&id, &status, &attempts, &recorded, &succeeded, &lastAttempt, &claimed); err != nil {
			t.Fatal(err)
		}
		report("delivery %s: status %s, attempts %d, %d attempt rows (last %d), one succeeded: %t, still claimed: %t",
			id, status, attempts, recorded, lastAttempt, succeeded, claimed)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}

	events := map[string]stored{}
	rows, err = e.db.Pool.Query(ctx, "SELECT id, user_id, body FROM walhook.events ORDER BY commit_lsn, seq")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var s stored
		if err := rows.Scan(&id, &s.user, &s.body); err != nil {
			t.Fatal(err)
		}
		s.pos = len(events)
		events[id] = s
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	recorded := map[string][2]int{} // attempts recorded, of which answered
	rows, err = e.db.Pool.Query(ctx, "SELECT event_id, count(*), count(status_code) FROM walhook.delivery_attempts GROUP BY event_id")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var all, answered int
		if err := rows.Scan(&id, &all, &answered); err != nil {
			t.Fatal(err)
		}
		recorded[id] = [2]int{all, answered}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}

	v.checkRequests(t, events, recorded, reqs, o, report)
	return v
}

func (v *verdict) checkRequests(t *testing.T, events map[string]stored, recorded map[string][2]int,
	reqs []testenv.Request, o verifyOptions, report func(string, ...any)) {
	t.Helper()
	verifier, err := signature.NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	v.requests = len(reqs)
	received := map[string]int{} // requests per id
	whole := map[string]bool{}   // received with the whole body
	latest := map[string]int{}   // per user, the latest commit position received
	firstSeen := map[string]bool{}
	for _, r := range reqs {
		id := r.ID()
		ev, ok := events[id]
		if !ok {
			report("received webhook-id %q, which is no event", id)
			continue
		}
		received[id]++
		switch {
		case string(r.Body) == ev.body:
			whole[id] = true
			if err := verifier.Verify(r.Header, r.Body); err != nil {
				report("event %s: signature: %v", id, err)
			}
			if ua := r.Header.Get("User-Agent"); !strings.HasPrefix(ua, "walhook/") {
				report("event %s: user-agent %q", id, ua)
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				report("event %s: content-type %q", id, ct)
			}
		case o.killed && strings.HasPrefix(ev.body, string(r.Body)):
			v.truncated++
		default:
			report("event %s: body received differs from the body stored:\n got %.300s\nwant %.300s", id, r.Body, ev.body)
		}
		if !firstSeen[id] {
			firstSeen[id] = true
			if last, ok := latest[ev.user]; ok && ev.pos < last {
				report("user %s: event %s first arrived after a later event of that user", ev.user, id)
			}
		} else if ev.pos < latest[ev.user] {
			v.staleDuplicates++
		}
		if last, ok := latest[ev.user]; !ok || ev.pos > last {
			latest[ev.user] = ev.pos
		}
	}
	v.distinct = len(received)
	v.duplicates = v.requests - v.distinct
	for id := range events {
		if !whole[id] {
			v.lost++
			report("LOST: event %s never received whole (%d requests)", id, received[id])
		}
		rec := recorded[id]
		// An answer was recorded only for a request the receiver got.
		if received[id] < rec[1] {
			report("event %s: %d answered attempts recorded, but the receiver got %d requests", id, rec[1], received[id])
		}
		// Without kills every attempt finished and was recorded, and
		// without refusals every attempt reached the receiver.
		if !o.killed && received[id] > rec[0] {
			report("event %s: the receiver got %d requests, only %d attempts recorded", id, received[id], rec[0])
		}
		if !o.killed && !o.refused && received[id] != rec[0] {
			report("event %s: the receiver got %d requests, %d attempts recorded", id, received[id], rec[0])
		}
	}
}

// faultLog measures one case for docs/reliability.md.
type faultLog struct {
	name     string
	faults   int
	inFlight []int64
	recovery []time.Duration
	// acked, where set, tells the duplicates of acknowledged deliveries
	// from the retries of failed ones.
	acked interface{ afterAck() int }
}

// inject records a fault about to happen: the changes committed and not yet
// delivered at that moment are the events in flight.
func (f *faultLog) inject(t *testing.T, db *testenv.DB) {
	t.Helper()
	f.faults++
	var n int64
	err := db.Pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM changes_log)
		- (SELECT count(*) FROM walhook.deliveries WHERE status = 'delivered')`).Scan(&n)
	if err != nil {
		t.Logf("measure events in flight: %v", err)
		n = -1
	}
	f.inFlight = append(f.inFlight, n)
}

func (f *faultLog) recovered(d time.Duration) { f.recovery = append(f.recovery, d) }

// summary logs the case's line of the table in docs/reliability.md.
func (f *faultLog) summary(t *testing.T, v verdict, recoveryWhat string) {
	t.Helper()
	var maxIn, sumIn int64
	for _, n := range f.inFlight {
		maxIn, sumIn = max(maxIn, n), sumIn+n
	}
	in := "-"
	if len(f.inFlight) > 0 {
		in = fmt.Sprintf("max %d, mean %d", maxIn, sumIn/int64(len(f.inFlight)))
	}
	rec := "-"
	if len(f.recovery) > 0 {
		var maxR, sumR time.Duration
		for _, d := range f.recovery {
			maxR, sumR = max(maxR, d), sumR+d
		}
		rec = fmt.Sprintf("max %.2fs, mean %.2fs (%s)", maxR.Seconds(), (sumR / time.Duration(len(f.recovery))).Seconds(), recoveryWhat)
	}
	dups := fmt.Sprint(v.duplicates)
	if f.acked != nil {
		dups += fmt.Sprintf(", %d after a 2xx", f.acked.afterAck())
	}
	t.Logf("SUMMARY | %s | %d | %d | %s | %d | %s (%d stale, %d cut short) | %s |",
		f.name, f.faults, v.events, in, v.lost, dups, v.staleDuplicates, v.truncated, rec)
}

// slotHolder returns the pid of the walsender holding walhook's slot, 0 if
// none does.
func slotHolder(db *testenv.DB) (int, error) {
	var pid *int32
	err := db.Pool.QueryRow(context.Background(),
		"SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'walhook'").Scan(&pid)
	if errors.Is(err, pgx.ErrNoRows) || pid == nil {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return int(*pid), nil
}

// waitSlotHolder waits until a walsender other than old (0: any) holds the
// slot, and returns its pid.
func waitSlotHolder(t *testing.T, db *testenv.DB, old int, timeout time.Duration) int {
	t.Helper()
	var pid int
	eventually(t, timeout, "a walsender holds the slot", func() (bool, string) {
		var err error
		pid, err = slotHolder(db)
		if err != nil {
			return false, err.Error()
		}
		return pid != 0 && pid != old, fmt.Sprintf("holder %d, old %d", pid, old)
	})
	return pid
}
