package pgnet_test

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/walhook/walhook/cdc/pgnet"
)

// sockopts dials a listener on 127.0.0.1 with cfg's DialFunc and reads the
// socket's keepalive and user timeout settings.
func sockopts(t *testing.T, cfg *pgconn.Config) map[string]int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := cfg.DialFunc(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	opts := map[string][2]int{
		"keepalive":    {syscall.SOL_SOCKET, syscall.SO_KEEPALIVE},
		"idle":         {syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE},
		"interval":     {syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL},
		"count":        {syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT},
		"user_timeout": {syscall.IPPROTO_TCP, 0x12},
	}
	got := make(map[string]int)
	raw.Control(func(fd uintptr) {
		for name, o := range opts {
			v, err := syscall.GetsockoptInt(int(fd), o[0], o[1])
			if err != nil {
				t.Errorf("getsockopt %s: %v", name, err)
			}
			got[name] = v
		}
	})
	return got
}

func TestApply(t *testing.T) {
	cases := []struct {
		name, conn string
		want       map[string]int
	}{
		{"defaults", "postgres://u@127.0.0.1/db",
			map[string]int{"keepalive": 1, "idle": 5, "interval": 5, "count": 3, "user_timeout": 15000}},
		{"libpq parameters", "postgres://u@127.0.0.1/db?keepalives_idle=30&keepalives_interval=10&keepalives_count=4&tcp_user_timeout=60000",
			map[string]int{"keepalive": 1, "idle": 30, "interval": 10, "count": 4, "user_timeout": 60000}},
		{"off", "host=127.0.0.1 keepalives=0 tcp_user_timeout=0",
			map[string]int{"keepalive": 0, "user_timeout": 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := pgconn.ParseConfig(tc.conn)
			if err != nil {
				t.Fatal(err)
			}
			if err := pgnet.Apply(cfg); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout"} {
				if _, ok := cfg.RuntimeParams[k]; ok {
					t.Errorf("%s left in the runtime parameters: the server would reject it", k)
				}
			}
			got := sockopts(t, cfg)
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %d, want %d", k, got[k], v)
				}
			}
		})
	}
}

func TestApplyRejectsBadValues(t *testing.T) {
	for _, conn := range []string{
		"host=127.0.0.1 keepalives_idle=soon",
		"host=127.0.0.1 keepalives_count=0",
		"host=127.0.0.1 tcp_user_timeout=-1",
	} {
		cfg, err := pgconn.ParseConfig(conn)
		if err != nil {
			t.Fatal(err)
		}
		if err := pgnet.Apply(cfg); err == nil {
			t.Errorf("Apply(%q) = nil, want an error", conn)
		}
	}
}
