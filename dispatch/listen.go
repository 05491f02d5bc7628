package dispatch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// channelName is the NOTIFY channel of a side schema: a hash of the name
// keeps it within PostgreSQL's 63-byte identifiers whatever the schema's
// length.
func channelName(schema string) string {
	sum := sha256.Sum256([]byte(schema))
	return "walhook_" + hex.EncodeToString(sum[:8])
}

// listener wakes the producer on NOTIFY from the processes that capture.
// Its session also tells other processes that this one is alive: the
// rescuer frees the claims of processes whose session is gone.
type listener struct {
	*core
	wake          func()
	statesChanged func() // an endpoint was enabled or disabled
}

// run listens until ctx is done, reconnecting after any failure.
func (l *listener) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := l.once(ctx)
		if ctx.Err() != nil {
			return
		}
		l.logDB(ctx, "listen for new events; reconnecting", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// once runs one LISTEN session. A quiet session wakes every listenWait and
// proves the server still answers; a frozen network shows as a missed
// deadline, and the session is closed and made again.
func (l *listener) once(ctx context.Context) error {
	cfg := l.pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = "walhook:" + l.id
	var conn *pgx.Conn
	err := l.call(ctx, listenWait, func(ctx context.Context) error {
		var err error
		if conn, err = pgx.ConnectConfig(ctx, cfg); err != nil {
			return err
		}
		_, err = conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.channel}.Sanitize())
		return err
	})
	if conn != nil {
		defer func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pingTimeout)
			defer cancel()
			conn.Close(cctx)
		}()
	}
	if err != nil {
		return err
	}
	l.wake() // anything announced while we were not listening
	for {
		wctx, cancel := context.WithTimeout(ctx, listenWait)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err == nil:
			switch n.Payload {
			case l.id: // our own events went to our senders already
			case endpointsPayload:
				l.statesChanged()
			default:
				l.wake()
			}
			continue
		case !errors.Is(err, context.DeadlineExceeded):
			return err
		}
		if err := l.call(ctx, pingTimeout, conn.Ping); err != nil {
			return err
		}
	}
}
