package cdc_test

import (
	"testing"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/testenv"
)

// kindsTable has a column of each type walhook must render as to_jsonb does.
const kindsTable = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE TABLE kinds (
	id int PRIMARY KEY,
	c_int2 int2, c_int4 int4, c_int8 int8, c_numeric numeric, c_float4 float4, c_float8 float8,
	c_bool bool, c_text text, c_varchar varchar(20), c_char char(5), c_uuid uuid,
	c_timestamp timestamp, c_timestamptz timestamptz, c_date date, c_time time, c_interval interval,
	c_json json, c_jsonb jsonb, c_int4arr int4[], c_textarr text[], c_bytea bytea,
	c_mood mood, c_posint posint, c_oid oid, c_range int4range,
	c_tstzarr timestamptz[], c_jsonbarr jsonb[], c_numarr numeric[], c_boolarr bool[],
	c_moodarr mood[], c_posintarr posint[], c_boxarr box[]
)`

// kindsRows are inserted one per transaction; each is a row of values
// (SQL expressions) in column order after id.
var kindsRows = []string{
	`1, 12, -34, 9223372036854775807, 1.50, 1.5, 3.141592653589793,
	 true, E'h\u00e9llo "w\u00f6rld"\n\t\\ \u2028 \u0001', 'short', 'ab', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
	 '2026-11-26 20:31:33.123456', '2026-11-26 20:31:33.123456+02', '2026-11-26', '20:31:33.5', '1 year 2 mons 3 days 04:05:06.7',
	 '{"b": 1, "a": [1, 2, {"c": null}], "a": "dup"}', '{"x": "y", "n": 1.0, "u": "\u00e9"}', '{1,2,3}',
	 ARRAY['a b', 'NULL', NULL, 'q"uote', 'back\slash', '', '{br,ace}'], '\x00ff10',
	 'happy', 7, 4294967295, '[1,5)',
	 ARRAY['2026-01-01 10:00:00+00'::timestamptz, 'infinity'], ARRAY['{"a": [1]}'::jsonb, 'null', '"s"'], ARRAY[1.5, 'NaN', -0.0001],
	 '{t,f,NULL}', '{sad,happy}', '{1,2}', ARRAY[box '((0,0),(1,1))', box '((2,2),(3,3))']`,
	`2, -32768, 2147483647, -9223372036854775808, 'NaN', '-Infinity', 'Infinity',
	 false, '', '', '', '00000000-0000-0000-0000-000000000000',
	 'infinity', '-infinity', '0044-03-15 BC', '24:00:00', '-1 days +02:00:00',
	 '"just a string"', '[]', '{}', '{}', '',
	 'sad', 1, 0, 'empty',
	 '{}', '{}', '{}', '{}', '{}', '{}', '{}'`,
	`3, 0, 0, 0, 0.000001, 1e30, 1e-300,
	 NULL, NULL, NULL, NULL, NULL,
	 '0044-03-15 12:00:00 BC', '0001-01-01 00:00:00+00 BC', '99999-12-31', NULL, NULL,
	 'null', 'null', '[0:2]={7,8,9}', '{{a,b},{c,"d e"}}', NULL,
	 NULL, NULL, NULL, '(,)',
	 NULL, NULL, '{{1,2},{3,4}}', NULL, NULL, NULL, NULL`,
	`4, NULL, NULL, NULL, NULL, NULL, NULL,
	 NULL, NULL, NULL, NULL, NULL,
	 NULL, NULL, NULL, NULL, NULL,
	 NULL, NULL, NULL, NULL, NULL,
	 NULL, NULL, NULL, NULL,
	 NULL, NULL, NULL, NULL, NULL, NULL, NULL`,
}

func TestTypesMatchToJSONB(t *testing.T) {
	for _, identity := range []string{"DEFAULT", "FULL"} {
		t.Run(identity, func(t *testing.T) {
			db := testenv.NewDB(t)
			db.Exec(t, kindsTable)
			db.Exec(t, "ALTER TABLE kinds REPLICA IDENTITY "+identity)
			cfg := baseConfig(db)
			cfg.Table = "public.kinds"
			cfg.ExcludeColumns, cfg.IgnoreUpdateColumns = nil, nil
			h := startCapture(t, db, cfg)
			snapshot := func(id int) string {
				return queryString(t, db, "SELECT to_jsonb(k)::text FROM kinds k WHERE id = $1", id)
			}

			var want []string
			for i, values := range kindsRows {
				db.Exec(t, "INSERT INTO kinds VALUES ("+values+")")
				want = append(want, snapshot(i+1))
			}
			evs := h.sink.waitLen(t, len(kindsRows))
			for i, e := range evs {
				if e.Type != "user.created" {
					t.Fatalf("event %d: %s", i, e.Type)
				}
				checkData(t, db, e, want[i])
			}

			old := want[0]
			db.Exec(t, `UPDATE kinds SET c_text = 'changed', c_jsonb = '{"new": true}', c_int4arr = '{{5}}', c_timestamptz = now() WHERE id = 1`)
			updated := snapshot(1)
			evs = h.sink.waitLen(t, len(kindsRows)+1)
			e := evs[len(evs)-1]
			checkData(t, db, e, updated)
			if identity == "FULL" {
				checkPrevious(t, db, e, old, "c_text", "c_jsonb", "c_int4arr", "c_timestamptz")
			}

			db.Exec(t, "DELETE FROM kinds WHERE id = 3")
			evs = h.sink.waitLen(t, len(kindsRows)+2)
			e = evs[len(evs)-1]
			if identity == "FULL" {
				checkData(t, db, e, want[2])
			} else {
				checkData(t, db, e, `{"id": 3}`)
			}
			checkUserIDs(t, evs, "1", "2", "3", "4", "1", "3")
		})
	}
}

func checkUserIDs(t *testing.T, evs []cdc.Event, want ...string) {
	t.Helper()
	for i, e := range evs {
		if i < len(want) && e.UserID != want[i] {
			t.Errorf("event %d: user id %q, want %q", i, e.UserID, want[i])
		}
	}
}
