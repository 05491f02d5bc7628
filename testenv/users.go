package testenv

import (
	"encoding/json"

	"github.com/jackc/pgx/v5"
)

// LastEvent is the last event a test saw for one user: its type and the
// body's "data".
type LastEvent struct {
	Type string
	Data json.RawMessage
}

// UsersUnlikeTheirLastEvent compares each user's last event with
// public.users as it is now (UsersTableSQL's, without password_hash, in
// UTC): a user whose row exists must have a last event other than
// user.deleted whose data is the row; a user whose row is gone must have
// user.deleted last, or no event. It returns a line for each user that
// does not match, at most limit, each value cut at 300 characters.
func (d *DB) UsersUnlikeTheirLastEvent(t TB, last map[string]LastEvent, limit int) []string {
	t.Helper()
	var ids, types, datas []string
	for user, e := range last {
		ids, types, datas = append(ids, user), append(types, e.Type), append(datas, string(e.Data))
	}
	ctx, cancel := opContext()
	defer cancel()
	var bad []string
	err := pgx.BeginFunc(ctx, d.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL TimeZone = 'UTC'"); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `
			WITH l AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS l(user_id, type, data)),
			r AS (SELECT id::text AS user_id, to_jsonb(u) - 'password_hash' AS row FROM public.users u)
			SELECT coalesce(l.user_id, r.user_id) || ': last ' || coalesce(l.type, 'none') || ' ' || left(coalesce(l.data, ''), 300) ||
				', row ' || left(coalesce(r.row::text, 'gone'), 300)
			FROM l FULL JOIN r USING (user_id)
			WHERE NOT coalesce(r.user_id IS NULL AND l.type = 'user.deleted'
				OR r.user_id IS NOT NULL AND l.type <> 'user.deleted' AND l.data::jsonb = r.row, false)
			LIMIT $4`, ids, types, datas, limit)
		if err != nil {
			return err
		}
		bad, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		t.Fatalf("compare the users with their last events: %v", err)
	}
	return bad
}
