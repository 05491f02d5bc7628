package cdc_test

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walhook/walhook/cdc"
	"github.com/walhook/walhook/testenv"
)

// freezer is a TCP proxy whose existing connections can be frozen: bytes
// stop flowing both ways but nothing is closed, as in a network partition.
// Connections opened after a freeze flow normally.
type freezer struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	frozen chan struct{} // closed by freeze
}

func startFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, target: target, frozen: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { f.serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
		wg.Wait()
	})
	return f
}

func (f *freezer) serve(client net.Conn) {
	server, err := net.Dial("tcp", f.target)
	if err != nil {
		client.Close()
		return
	}
	f.mu.Lock()
	f.conns = append(f.conns, client, server)
	frozen := f.frozen
	f.mu.Unlock()
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			select {
			case <-frozen:
				io.Copy(io.Discard, src) // swallow until closed
				return
			default:
			}
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				dst.Close()
				return
			}
		}
	}
	go pipe(server, client)
	pipe(client, server)
}

// freeze stops the connections open now.
func (f *freezer) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.frozen)
	f.frozen = make(chan struct{})
}

func (f *freezer) port() int { return f.ln.Addr().(*net.TCPAddr).Port }

func TestPartitionedConnectionIsReplaced(t *testing.T) {
	// The server must give up on the frozen walsender for the slot to be
	// free again; by default that takes a minute.
	cluster := testenv.NewCluster(t, testenv.Options{Settings: map[string]string{"wal_sender_timeout": "3s"}})
	db := testenv.NewDBOn(t, cluster)
	db.CreateUsersTable(t)
	proxy := startFreezer(t, fmt.Sprintf("127.0.0.1:%d", cluster.Port()))
	cfg := baseConfig(db)
	cfg.ConnString = strings.Replace(db.DSN, fmt.Sprintf(":%d/", cluster.Port()), fmt.Sprintf(":%d/", proxy.port()), 1)
	h := newHarness(t, db, cfg)
	cdc.SetSilenceTimeout(h.cap, 2*time.Second)
	h.start()
	first := insertUsers(t, db, 1)
	h.sink.waitFor(t, "first user", func(evs []cdc.Event) bool { return hasAll(evs, first) })

	proxy.freeze()
	second := insertUsers(t, db, 1)
	h.logs.waitLog(t, "connection presumed dead")
	h.sink.waitFor(t, "user inserted during the partition", func(evs []cdc.Event) bool { return hasAll(evs, second) })
}
