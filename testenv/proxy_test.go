package testenv_test

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/walhook/walhook/testenv"
)

// startEcho starts a TCP server on 127.0.0.1 that sends back what it gets.
func startEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { io.Copy(c, c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func dial(t *testing.T, p *testenv.Proxy) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends msg and reads it back, with a generous deadline.
func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write through proxy: %v", err)
	}
	readBack(t, c, msg)
}

func readBack(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read through proxy: %v", err)
	}
	if string(got) != msg {
		t.Fatalf("read %q through proxy, want %q", got, msg)
	}
}

// expectSilence checks that nothing arrives on c for a while and that c
// is not closed either.
func expectSilence(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	n, err := c.Read(make([]byte, 64))
	if n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %d bytes, err %v from a blackholed connection; want nothing until the deadline", n, err)
	}
}

func TestProxyPassesBothWays(t *testing.T) {
	p := testenv.StartProxy(t, startEcho(t))
	c := dial(t, p)
	roundTrip(t, c, "hello")
	roundTrip(t, c, "again")
	if p.Mode() != testenv.Pass {
		t.Errorf("mode %v, want pass", p.Mode())
	}
	u, err := p.URL("postgres://u@127.0.0.1:5432/db?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	if want := "postgres://u@" + p.Addr() + "/db?sslmode=disable"; u != want {
		t.Errorf("URL = %q, want %q", u, want)
	}
}

func TestProxyBlackhole(t *testing.T) {
	p := testenv.StartProxy(t, startEcho(t))
	old := dial(t, p)
	roundTrip(t, old, "before")

	p.SetMode(testenv.Blackhole)
	if _, err := old.Write([]byte("lost")); err != nil {
		t.Fatalf("write into a blackhole: %v; want it accepted silently", err)
	}
	expectSilence(t, old)
	// A connection made during the blackhole is accepted and held...
	held := dial(t, p)
	if _, err := held.Write([]byte("held")); err != nil {
		t.Fatalf("write on a held connection: %v", err)
	}
	expectSilence(t, held)

	p.SetMode(testenv.Pass)
	// ... and reset when it ends, what it carried lost.
	held.SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := held.Read(make([]byte, 8)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read %d bytes, err %v on a connection held by the blackhole after it ended; want connection reset", n, err)
	}
	// The connection open at the cut stays cut for good.
	expectSilence(t, old)
	roundTrip(t, dial(t, p), "new")
}

func TestProxyReset(t *testing.T) {
	p := testenv.StartProxy(t, startEcho(t))
	old := dial(t, p)
	roundTrip(t, old, "before")

	p.SetMode(testenv.Reset)
	old.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := old.Read(make([]byte, 8)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read on a reset connection: %v, want connection reset", err)
	}
	// The kernel completes the handshake and the proxy resets it at once:
	// the reset shows in the dial or in the first read.
	fresh, err := net.DialTimeout("tcp", p.Addr(), 10*time.Second)
	if err == nil {
		fresh.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, err = fresh.Read(make([]byte, 8))
		fresh.Close()
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("connection made during reset: %v, want connection reset", err)
	}

	p.SetMode(testenv.Pass)
	roundTrip(t, dial(t, p), "after")
}

func TestProxyCloseEndsFrozenConnections(t *testing.T) {
	p, err := testenv.NewProxy(startEcho(t))
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p)
	roundTrip(t, c, "x")
	p.SetMode(testenv.Blackhole)
	closed := make(chan struct{})
	go func() { p.Close(); p.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return with a frozen connection open")
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Read(make([]byte, 8)); err == nil {
		t.Fatal("connection still open after Close")
	}
}
