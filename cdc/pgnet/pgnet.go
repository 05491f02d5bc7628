// Package pgnet sets how walhook's connections to PostgreSQL, replication
// included, notice a network that went silent. Without it a connection to a
// server behind a dropped route or a failed-over load balancer waits for
// TCP's retransmission timeout, about 15 minutes on Linux, before any call
// on it fails; context deadlines bound the calls, these settings bound the
// socket, including while it is idle.
//
// The defaults (KeepAliveIdle, KeepAliveInterval, KeepAliveCount,
// DefaultUserTimeout) find a dead peer within about 20 s whether the
// connection is idle or sending. A connection string may override them
// with libpq's parameters, which PostgreSQL's own clients understand too:
// keepalives (0 turns keepalives off), keepalives_idle, keepalives_interval
// (seconds), keepalives_count, and tcp_user_timeout (milliseconds; 0 leaves
// the system's).
package pgnet

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Keepalives probe an idle connection after KeepAliveIdle of silence, then
// every KeepAliveInterval. With a user timeout set, Linux gives up once
// probes have gone unanswered for that long, otherwise after KeepAliveCount
// of them.
const (
	KeepAliveIdle     = 5 * time.Second
	KeepAliveInterval = 5 * time.Second
	KeepAliveCount    = 3
)

// DefaultUserTimeout is TCP_USER_TIMEOUT: how long data sent (or a
// keepalive probe) may stay unacknowledged before the kernel closes the
// connection. A busy server still acknowledges at once, so only a dead
// network or host reaches it.
const DefaultUserTimeout = 15 * time.Second

// Apply makes cfg dial with keepalives and TCP_USER_TIMEOUT, keeping its
// connect timeout. It takes libpq's keepalive and tcp_user_timeout
// parameters out of cfg.RuntimeParams, where pgx leaves them (the server
// would reject them as unknown settings), and uses their values instead of
// the defaults.
func Apply(cfg *pgconn.Config) error {
	ka := net.KeepAliveConfig{Enable: true, Idle: KeepAliveIdle, Interval: KeepAliveInterval, Count: KeepAliveCount}
	userTimeout := DefaultUserTimeout
	params := []struct {
		name string
		set  func(int) error
	}{
		{"keepalives", func(v int) error { ka.Enable = v != 0; return nil }},
		{"keepalives_idle", seconds(&ka.Idle)},
		{"keepalives_interval", seconds(&ka.Interval)},
		{"keepalives_count", func(v int) error {
			if v <= 0 {
				return errors.New("want a count above 0")
			}
			ka.Count = v
			return nil
		}},
		{"tcp_user_timeout", func(v int) error { userTimeout = time.Duration(v) * time.Millisecond; return nil }},
	}
	for _, p := range params {
		raw, ok := cfg.RuntimeParams[p.name]
		if !ok {
			continue
		}
		v, err := strconv.Atoi(raw)
		if err == nil && v < 0 {
			err = errors.New("negative")
		}
		if err == nil {
			err = p.set(v)
		}
		if err != nil {
			return fmt.Errorf("connection parameter %s=%q: %w", p.name, raw, err)
		}
		delete(cfg.RuntimeParams, p.name)
	}
	d := &net.Dialer{Timeout: cfg.ConnectTimeout, KeepAliveConfig: ka}
	if !ka.Enable {
		d.KeepAlive = -1
	}
	if userTimeout > 0 {
		d.Control = userTimeoutControl(userTimeout)
	}
	cfg.DialFunc = d.DialContext
	return nil
}

func seconds(d *time.Duration) func(int) error {
	return func(v int) error {
		if v == 0 {
			return errors.New("want seconds above 0")
		}
		*d = time.Duration(v) * time.Second
		return nil
	}
}
