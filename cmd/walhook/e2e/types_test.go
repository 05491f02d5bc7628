package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/walhook/walhook/testenv"
)

// typesSchema is a users table with a column of every kind of type walhook
// renders, with names that need escaping, a dropped column and a generated
// one. REPLICA IDENTITY FULL: updates and deletes carry whole rows, so that
// every event can be compared with the row.
const typesSchema = `
CREATE TYPE mood AS ENUM ('happy', 'so "sad"', 'a,b', 'NULL', 'with space', '{brace}', 'back\slash', 'ünï 😀');
CREATE DOMAIN email_d AS text CHECK (VALUE LIKE '%@%');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE DOMAIN doc_d AS jsonb CHECK (jsonb_typeof(VALUE) = 'object');
CREATE DOMAIN ints_d AS int[] CHECK (cardinality(VALUE) < 10);
CREATE TYPE pair AS (a int, b text);
CREATE TABLE users (
	id bigserial PRIMARY KEY,
	email email_d NOT NULL,
	"Weird ""Name"" \ col" text,
	"名前" text,
	U&"ctl\0001col" text,
	dropme text,
	mood mood, moods mood[],
	score posint, scores posint[], doc doc_d, ints_d ints_d,
	pair pair, pairs pair[],
	r4 int4range, rts tstzrange, r4s int4range[], mr int4multirange,
	ints int[], texts text[], grid int[], bools bool[], floats float8[], nums numeric[],
	boxes box[], stamps timestamptz[], jsons jsonb[],
	big jsonb, js json,
	t text, b bytea, u uuid, n numeric, f4 real, f8 double precision, i2 smallint, i8 bigint, flag boolean,
	ts timestamp, tstz timestamptz, d date, tm time, tmtz timetz, iv interval,
	ip inet, m money, bits bit varying, o oid, pt point, tsv tsvector,
	gen text GENERATED ALWAYS AS (upper(email)) STORED
);
ALTER TABLE users DROP COLUMN dropme;
ALTER TABLE users REPLICA IDENTITY FULL;
-- jsonb refuses some json values (\u0000, lone surrogates, numbers out of
-- numeric's range), and so does to_jsonb; walhook sends those as strings.
CREATE FUNCTION json_or_text(j json) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	RETURN j::jsonb;
EXCEPTION WHEN others THEN
	RETURN to_jsonb(j::text);
END $$;
`

// typesRows inserts one row each, in its own transaction: typical values,
// NULLs, edge values, and a row of about 2 MB.
var typesRows = []string{
	`INSERT INTO users (email, "Weird ""Name"" \ col", "名前", U&"ctl\0001col", mood, moods, score, scores, doc, ints_d,
		pair, pairs, r4, rts, r4s, mr, ints, texts, grid, bools, floats, nums, boxes, stamps, jsons, big, js,
		t, b, u, n, f4, f8, i2, i8, flag, ts, tstz, d, tm, tmtz, iv, ip, m, bits, o, pt, tsv)
	VALUES ('ada@example.com', 'weird', 'エイダ', 'ctl', 'so "sad"',
		ARRAY['happy', 'so "sad"', 'a,b', 'NULL', 'with space', '{brace}', 'back\slash', 'ünï 😀', NULL]::mood[],
		42, ARRAY[1, 2, NULL]::posint[], '{"a": {"b": [1, "two", null, true, 2.50]}}', '{1,2,3}',
		ROW(1, 'x "y", z')::pair, ARRAY[ROW(1, 'a')::pair, ROW(NULL, 'b c')::pair, ROW(2, NULL)::pair, NULL],
		int4range(1, 5), tstzrange('2026-01-01 00:00+00', '2026-02-01 00:00+00', '[)'),
		ARRAY[int4range(1, 3), 'empty'::int4range, int4range(NULL, 7)], '{[1,3),[5,7)}',
		'{1,-2,2147483647}',
		ARRAY['a"b', 'c,d', NULL, 'NULL', 'null', '', ' lead', 'trail ', '{x}', 'back\slash', E'new\nline', E'tab\there', '😀', U&'\2028\2029', 'ünï'],
		ARRAY[[1, 2], [3, NULL]], '{t,f,NULL}', '{NaN,Infinity,-Infinity,-0,1e308,1.5e-300,0.1}',
		'{NaN,Infinity,-Infinity,0.000000000000000000001,123456789012345678901234567890.123}',
		'{(1,1),(0,0);(2,2),(1,1)}',
		ARRAY['2026-01-02 03:04:05.123456+00', 'infinity', '-infinity', '0044-03-15 12:00+00 BC', '1800-01-01 00:00+05:53:28']::timestamptz[],
		ARRAY['{"a": "b,c"}'::jsonb, 'null', '[1, "}"]', '"\u2028 \ud83d\ude00"', NULL],
		'{"k": [1, 2.5, "s"]}',
		'  {"a": 1, "a": 2, "s": "\u00e9\ud83d\ude00", "ctl": "\u0001", "n": 1.0e2, "ws" : [ 1 , 2 ] }  ',
		'plain', '\xdeadbeef00', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
		123456789012345678901234567890.000000000000000000001, 3.4028235e38, 1.7976931348623157e308,
		-32768, 9223372036854775807, true,
		'2026-11-26 20:31:33.123456', '2026-11-26 20:31:33.123456+00', '2026-11-26', '20:31:33.5', '20:31:33+05:30',
		'1 year 2 mons -3 days 04:05:06.789', '2001:db8::1/64', 1234.56, B'10101', 4294967295, '(1.5,-2)',
		to_tsvector('simple', 'it''s a "quoted" test'))`,
	`INSERT INTO users (email) VALUES ('nulls@example.com')`,
	`INSERT INTO users (email, "名前", t, texts, grid, ints, ints_d, scores, floats, ts, tstz, d, n, f4, f8,
		big, js, iv, doc, b, bits, m, o, pt, pairs, rts, mr, jsons)
	VALUES ('edge@example.com',
		U&'emoji \+01F469\200D\+01F469\200D\+01F467 flag \+01F3F3\FE0F\200D\+01F308, RTL مرحبا עברית, combining e\0301, BOM \FEFF, LS \2028 PS \2029, nonchars \FFFF \+10FFFF',
		E'controls \x01\x02\x1f\x7f "quotes" \\backslash\\ /slash/ \u2028 \\u0000 literal',
		'{}', ARRAY[[[1, 2]], [[3, 4]]], '[0:2]={1,2,3}', '[-5:-3]={7,8,9}', '{}', '{}',
		'4713-01-01 00:00:00 BC', '294276-12-31 23:59:59.999999+00', 'infinity', 'NaN', 'NaN', '-Infinity',
		(repeat('[', 500) || repeat(']', 500))::jsonb, '[]', '-178000000 years',
		'{"\u00e9\u0001": "\ud83d\ude00 \u2028", "": ""}', '\x', B'', '-92233720368547758.08', 0, '(NaN,Infinity)',
		'{}', 'empty', '{}', '{}')`,
	`INSERT INTO users (email, big, t, texts)
	SELECT 'large@example.com',
		(SELECT jsonb_build_object('md5s', jsonb_agg(md5(g::text)), 'esc', repeat(E'"\\\n\u2028', 1000)) FROM generate_series(1, 30000) g),
		repeat(E'é😀"\\\t\u2028\x01', 80000),
		(SELECT array_agg('q"' || g || E',\\') FROM generate_series(1, 10000) g)`,
}

// TestTypesRenderLikeToJSONB: every column of every event's data equals
// to_jsonb of the row (as jsonb), except where walhook documents a text
// fallback: composites and user-defined base types such as hstore (to_jsonb
// makes objects of them; walhook sends their text form as a string) and
// json values jsonb refuses. It holds for inserts, for updates that leave
// TOASTed values unchanged, and for deletes, and every body arrives intact.
// Under hostile database defaults (DateStyle, TimeZone, IntervalStyle,
// bytea_output, extra_float_digits) the rendering is the same.
func TestTypesRenderLikeToJSONB(t *testing.T) {
	for _, hostile := range []bool{false, true} {
		name := "server defaults"
		if hostile {
			name = "hostile database defaults"
		}
		t.Run(name, func(t *testing.T) { typesScenario(t, hostile) })
	}
}

// typesScenario inserts, updates and deletes the typesRows and compares
// every event with its row; hostile sets odd per-database defaults that
// walhook's own session settings must override.
func typesScenario(t *testing.T, hostile bool) {
	rcv := testenv.StartReceiver(t, nil)
	db := testenv.NewDB(t)
	db.Exec(t, typesSchema)
	if _, err := db.Pool.Exec(context.Background(), "CREATE EXTENSION hstore"); err == nil {
		db.Exec(t, "ALTER TABLE users ADD COLUMN hs hstore")
	} else {
		t.Logf("no hstore column: CREATE EXTENSION hstore: %v", err)
	}
	if hostile {
		db.Exec(t, fmt.Sprintf(`ALTER DATABASE %s SET DateStyle = 'SQL, DMY'`, db.Name))
		db.Exec(t, fmt.Sprintf(`ALTER DATABASE %s SET TimeZone = 'Asia/Kolkata'`, db.Name))
		db.Exec(t, fmt.Sprintf(`ALTER DATABASE %s SET IntervalStyle = 'sql_standard'`, db.Name))
		db.Exec(t, fmt.Sprintf(`ALTER DATABASE %s SET bytea_output = 'escape'`, db.Name))
		db.Exec(t, fmt.Sprintf(`ALTER DATABASE %s SET extra_float_digits = -3`, db.Name))
		db.Pool.Reset()
	}
	// The 2 MB row must arrive whole: this test is about rendering, the cap
	// has tests of its own.
	cfg := writeConfig(t, settings{dsn: db.DSN, source: "  max_event_bytes: 16777216\n",
		endpoints: []endpointSettings{{name: "crm", url: rcv.URL}}})
	p := start(t, "run", "-config", cfg)
	waitSlotActive(t, db)

	// One session with the settings walhook's rendering follows, for the
	// inserts (whose literals then read the same) and for to_jsonb.
	ctx := context.Background()
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; SET IntervalStyle = 'postgres';
		SET bytea_output = 'hex'; SET extra_float_digits = 1`); err != nil {
		t.Fatal(err)
	}
	rows := slices.Clone(typesRows)
	if hs := count(t, db, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'hs'"); hs == 1 {
		for i, v := range []string{`'a=>1, "b c"=>NULL, "q\"uote"=>"v,al"'`, "NULL", "''", "'k=>v'"} {
			rows[i] = strings.Replace(rows[i], "INSERT INTO users (email", "INSERT INTO users (hs, email", 1)
			rows[i] = strings.Replace(rows[i], "VALUES (", "VALUES ("+v+", ", 1)
			rows[i] = strings.Replace(rows[i], "SELECT 'large", "SELECT "+v+", 'large", 1)
		}
	}
	for _, row := range rows {
		if _, err := conn.Exec(ctx, row); err != nil {
			t.Fatalf("insert: %v\n%s", err, row)
		}
	}
	n := int64(len(rows))
	waitEvents(t, db, n, 90*time.Second)
	want := expectedData(t, db)
	assertDataMatches(t, conn, want, "users", "user.created", n)

	// An update of one small column: TOASTed values arrive unchanged and
	// come from the old row.
	if _, err := conn.Exec(ctx, "UPDATE users SET i2 = coalesce(i2, 0) + 1"); err != nil {
		t.Fatal(err)
	}
	waitEvents(t, db, 2*n, 90*time.Second)
	assertDataMatches(t, conn, want, "users", "user.updated", n)
	if k := count(t, db, `SELECT count(*) FROM walhook.events WHERE type = 'user.updated'
		AND (SELECT array_agg(k) FROM jsonb_object_keys(payload->'previous') k) IS DISTINCT FROM '{i2}'`); k > 0 {
		t.Errorf("%d updates whose previous is not exactly the changed column i2", k)
	}

	if _, err := conn.Exec(ctx, "CREATE TABLE snap AS SELECT * FROM users; DELETE FROM users"); err != nil {
		t.Fatal(err)
	}
	waitEvents(t, db, 3*n, 90*time.Second)
	assertDataMatches(t, conn, want, "snap", "user.deleted", n)

	// pgoutput does not send generated columns; if data has one, it must
	// be right, never null.
	if k := count(t, db, `SELECT count(*) FROM walhook.events
		WHERE payload->'data' ? 'gen' AND payload->'data'->>'gen' IS DISTINCT FROM upper(payload->'data'->>'email')`); k > 0 {
		t.Errorf("%d events carry a wrong value for the generated column", k)
	}

	waitSettled(t, db, 3*n, 120*time.Second)
	assertBodiesIntact(t, db, rcv, 3*n)
	p.stop(t)
}

// expectedData returns a query for what walhook promises as data for the
// row with id $1 of a table shaped like users (the FROM is left as %s):
// to_jsonb of the row, with composites and user-defined base types as
// their text form, json through json_or_text, and no generated column.
func expectedData(t *testing.T, db *testenv.DB) string {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `
		SELECT quote_ident(a.attname), a.attgenerated <> '',
		       ty.typtype = 'c' OR (ty.typtype = 'b' AND ty.typcategory <> 'A' AND ty.oid >= 16384),
		       coalesce(el.typtype = 'c' OR (el.typtype = 'b' AND el.oid >= 16384), false),
		       ty.oid = 'json'::regtype
		FROM pg_attribute a
		JOIN pg_type ty ON ty.oid = a.atttypid
		LEFT JOIN pg_type el ON el.oid = ty.typelem AND ty.typcategory = 'A'
		WHERE a.attrelid = 'users'::regclass AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var name string
		// asText: a composite or user-defined base type (hstore);
		// arrayAsText: an array of those.
		var generated, asText, arrayAsText, isJSON bool
		if err := rows.Scan(&name, &generated, &asText, &arrayAsText, &isJSON); err != nil {
			t.Fatal(err)
		}
		switch {
		case generated:
		case asText:
			cols = append(cols, fmt.Sprintf("%s::text AS %[1]s", name))
		case arrayAsText:
			cols = append(cols, fmt.Sprintf("%s::text[] AS %[1]s", name))
		case isJSON:
			cols = append(cols, fmt.Sprintf("json_or_text(%s) AS %[1]s", name))
		default:
			cols = append(cols, name)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return "SELECT to_jsonb(x) FROM (SELECT " + strings.Join(cols, ", ") + " FROM %s WHERE id = $1) x"
}

// assertDataMatches compares the data of every event of type typ with the
// expected rendering of its row in table, naming the columns that differ.
func assertDataMatches(t *testing.T, conn *pgxpool.Conn, want, table, typ string, n int64) {
	t.Helper()
	ctx := context.Background()
	rows, err := conn.Query(ctx, "SELECT id, user_id::bigint FROM walhook.events WHERE type = $1 ORDER BY commit_lsn, seq", typ)
	if err != nil {
		t.Fatal(err)
	}
	type ev struct {
		id  string
		uid int64
	}
	var evs []ev
	for rows.Next() {
		var e ev
		if err := rows.Scan(&e.id, &e.uid); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, e)
	}
	rows.Close()
	if int64(len(evs)) != n {
		t.Errorf("%d %s events, want %d", len(evs), typ, n)
	}
	expected := fmt.Sprintf(want, table)
	for _, e := range evs {
		var found int
		var diff []string
		err := conn.QueryRow(ctx, `WITH w AS (`+expected+`), d AS (SELECT payload->'data' AS d FROM walhook.events WHERE id = $2)
			SELECT (SELECT count(*) FROM w) + (SELECT count(*) FROM d), coalesce((
				SELECT array_agg(format('%s: got %s, want %s', k,
					left(coalesce((d.d->k)::text, '(absent)'), 300), left(coalesce((w.to_jsonb->k)::text, '(absent)'), 300))
					ORDER BY k)
				FROM w, d, (SELECT jsonb_object_keys(w.to_jsonb) FROM w UNION SELECT jsonb_object_keys(d.d) FROM d) keys(k)
				WHERE d.d->k IS DISTINCT FROM w.to_jsonb->k), '{}')`, e.uid, e.id).Scan(&found, &diff)
		if err != nil {
			t.Fatalf("compare event %s with its row: %v", e.id, err)
		}
		if found != 2 {
			t.Errorf("%s %s: no row %d in %s to compare with", typ, e.id, e.uid, table)
		}
		for _, d := range diff {
			t.Errorf("%s %s (user %d): %s", typ, e.id, e.uid, d)
		}
	}
}

// assertBodiesIntact checks that the receiver got every event, each body
// valid UTF-8 and valid JSON and byte for byte the body walhook stored.
func assertBodiesIntact(t *testing.T, db *testenv.DB, rcv *testenv.Receiver, n int64) {
	t.Helper()
	seen := map[string]bool{}
	largest := 0
	for _, r := range rcv.Requests() {
		if seen[r.ID()] {
			continue
		}
		seen[r.ID()] = true
		largest = max(largest, len(r.Body))
		if !utf8.Valid(r.Body) || !json.Valid(r.Body) {
			t.Errorf("event %s: the body is not valid UTF-8 JSON: %.300s", r.ID(), r.Body)
			continue
		}
		var stored string
		db.QueryRowScan(t, "SELECT body FROM walhook.events WHERE id = $1", []any{r.ID()}, &stored)
		if !bytes.Equal(r.Body, []byte(stored)) {
			t.Errorf("event %s: the body received differs from the body stored", r.ID())
		}
	}
	if int64(len(seen)) != n {
		t.Errorf("receiver got %d distinct events, want %d", len(seen), n)
	}
	if largest < 2<<20 {
		t.Errorf("largest body %d bytes; the 2 MB row did not arrive whole", largest)
	}
}

// TestHostileJSONValues: json values that jsonb (and so to_jsonb) refuses
// are sent as strings of their text and do not stop capture; the ones it
// accepts render as to_jsonb does, duplicate keys and escapes included.
func TestHostileJSONValues(t *testing.T) {
	tests := []struct {
		name, js, jsa string // SQL literals for a json and a json[] column
	}{
		{"escapes", `'{"s": "\u00e9\ud83d\ude00\u2028\u0001", "k\u2029": 1}'`, "NULL"},
		{"duplicate keys and spacing", `' {"a": 1, "a": 2,  "b" : [ 1 , 2 ] } '`, "NULL"},
		{"huge but valid number", `'123456789012345678901234567890e100'`, "NULL"},
		{"escaped backslash before u0000", `'{"path": "C:\\u0000dir"}'`, "NULL"},
		{"NUL escape", `'{"nul": "\u0000"}'`, "NULL"},
		{"lone high surrogate", `'"\ud800"'`, "NULL"},
		{"lone low surrogate in a key", `'{"x\udc00y": 1}'`, "NULL"},
		{"number overflowing numeric", `'1e1000000'`, "NULL"},
		{"number underflowing numeric", `'[1e-1000000]'`, "NULL"},
		{"lone surrogate in a json array", "NULL", `ARRAY['"\ud800"', '1', NULL]::json[]`},
		{"NUL escape in a json array", "NULL", `ARRAY['{"nul": "\u0000"}', '[]']::json[]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv := testenv.StartReceiver(t, nil)
			db := testenv.NewDB(t)
			db.Exec(t, `CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL, js json, jsa json[]);
				ALTER TABLE users REPLICA IDENTITY FULL;
				CREATE FUNCTION json_or_text(j json) RETURNS jsonb LANGUAGE plpgsql AS $$
				BEGIN RETURN j::jsonb; EXCEPTION WHEN others THEN RETURN to_jsonb(j::text); END $$;`)
			cfg := writeConfig(t, settings{dsn: db.DSN, endpoints: []endpointSettings{{name: "crm", url: rcv.URL}}})
			p := start(t, "run", "-config", cfg)
			waitSlotActive(t, db)
			db.Exec(t, fmt.Sprintf("INSERT INTO users (email, js, jsa) VALUES ('hostile@example.com', %s, %s)", tt.js, tt.jsa))
			db.Exec(t, "INSERT INTO users (email) VALUES ('after@example.com')")
			waitCaptured(t, db, p, 2)
			var same bool
			var got, want string
			db.QueryRowScan(t, `SELECT e.payload->'data' = w.j, e.payload->'data', w.j
				FROM walhook.events e, users u,
				LATERAL (SELECT jsonb_build_object('id', u.id, 'email', u.email, 'js', json_or_text(u.js),
					'jsa', (SELECT jsonb_agg(json_or_text(x) ORDER BY i) FROM unnest(u.jsa) WITH ORDINALITY a(x, i))) j) w
				WHERE u.email = 'hostile@example.com' AND e.user_id = u.id::text`, nil, &same, &got, &want)
			if !same {
				t.Errorf("data %s\nwant %s", got, want)
			}
			waitSettled(t, db, 2, 60*time.Second)
			p.stop(t)
		})
	}
}

// waitCaptured waits until the side schema holds n events, failing at once
// if capture complains meanwhile: with PostgreSQL healthy, a warning from
// cdc means a change it could not store, which it will retry forever.
func waitCaptured(t *testing.T, db *testenv.DB, p *proc, n int64) {
	t.Helper()
	eventually(t, 60*time.Second, fmt.Sprintf("%d events captured", n), func() (bool, string) {
		for _, line := range strings.Split(p.out.String(), "\n") {
			if strings.Contains(line, "component=cdc") && (strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR")) {
				t.Fatalf("capture stalled on a hostile value: %s", line)
			}
		}
		got := count(t, db, "SELECT count(*) FROM walhook.events")
		return got == n, fmt.Sprintf("%d events", got)
	})
}
