package testenv

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"
)

// Mode is what a Proxy does with the connections through it.
type Mode int

const (
	// Pass forwards bytes both ways.
	Pass Mode = iota
	// Blackhole forwards nothing and closes nothing, as a dropped route or a
	// failed-over load balancer does: packets vanish, no reset. Connections
	// open when it begins stay silent for good, even once the proxy passes
	// again (the load balancer or NAT that knew them is gone: neither end
	// hears from the other again). Connections made during it are accepted
	// (the kernel completes the handshake) but held silent, and reset once
	// the proxy passes again: the target never saw them, so what the client
	// sent on them is lost, and its next attempt goes through.
	Blackhole
	// Reset resets the connections open when it begins and every new one at
	// once, as a rebooted host or a rejecting firewall does.
	Reset
)

// String names the mode, for test logs.
func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case Blackhole:
		return "blackhole"
	case Reset:
		return "reset"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// dialTimeout bounds the proxy's connection to its target.
const dialTimeout = 10 * time.Second

// Proxy is a TCP proxy on 127.0.0.1 in front of one target address, whose
// Mode a test switches to cut the network without touching either end.
//
// It works at the socket level: the kernel still acknowledges what each end
// sends to the proxy, so TCP keepalives and tcp_user_timeout never fire
// through it, and a blackhole is seen only by the timeouts of the program
// under test (read and context deadlines): the strictest test of those.
type Proxy struct {
	ln     net.Listener
	target string
	done   chan struct{} // closed by Close
	wg     sync.WaitGroup

	mu      sync.Mutex
	mode    Mode
	passing chan struct{} // closed while mode is Pass
	links   map[*link]struct{}
}

// link is one client connection and its connection to the target.
type link struct {
	client net.Conn
	server net.Conn      // nil until dialled
	frozen bool          // blackholed for good; under Proxy.mu
	freeze chan struct{} // closed when frozen
}

// NewProxy starts a proxy to target ("host:port") in Pass mode. The caller
// must Close it.
func NewProxy(target string) (*Proxy, error) {
	lc := net.ListenConfig{KeepAlive: -1} // the ends' keepalives are theirs
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start proxy to %s: %w", target, err)
	}
	passing := make(chan struct{})
	close(passing)
	p := &Proxy{
		ln: ln, target: target, done: make(chan struct{}),
		passing: passing, links: make(map[*link]struct{}),
	}
	p.wg.Go(p.accept)
	return p, nil
}

// StartProxy starts a proxy to target that is closed when the test ends.
func StartProxy(t TB, target string) *Proxy {
	t.Helper()
	p, err := NewProxy(target)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's address, 127.0.0.1:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Port is the proxy's port on 127.0.0.1.
func (p *Proxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// URL returns raw (a postgres:// or http:// URL) with its host and port
// replaced by the proxy's, so that a client of the target goes through it.
func (p *Proxy) URL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("route url through proxy: %w", err)
	}
	u.Host = p.Addr()
	return u.String(), nil
}

// Mode is the current mode.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// SetMode switches the proxy to m; see Mode for what each does to the
// connections open at the time.
func (p *Proxy) SetMode(m Mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m == p.mode {
		return
	}
	if p.mode == Pass {
		p.passing = make(chan struct{})
	}
	p.mode = m
	switch m {
	case Pass:
		close(p.passing)
	case Blackhole:
		for l := range p.links {
			if !l.frozen {
				l.frozen = true
				close(l.freeze)
			}
		}
	case Reset:
		for l := range p.links {
			l.reset()
			delete(p.links, l)
		}
	}
}

// Close stops the proxy and closes every connection through it, frozen
// ones included. It is idempotent.
func (p *Proxy) Close() {
	p.mu.Lock()
	select {
	case <-p.done:
		p.mu.Unlock()
		return
	default:
	}
	close(p.done)
	p.ln.Close()
	for l := range p.links {
		l.close()
		delete(p.links, l)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		if p.mode == Reset {
			p.mu.Unlock()
			resetConn(c)
			continue
		}
		l := &link{client: c, freeze: make(chan struct{})}
		p.links[l] = struct{}{}
		held := p.mode == Blackhole
		p.mu.Unlock()
		if held {
			p.wg.Go(func() { p.hold(l) })
		} else {
			p.wg.Go(func() { p.serve(l) })
		}
	}
}

// hold keeps a connection made during a blackhole silent until the proxy
// passes again, then resets it.
func (p *Proxy) hold(l *link) {
	if !p.waitPass() {
		return
	}
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
	resetConn(l.client)
}

// serve connects l to the target and copies both ways until either end
// closes.
func (p *Proxy) serve(l *link) {
	d := net.Dialer{Timeout: dialTimeout, KeepAlive: -1}
	server, err := d.Dial("tcp", p.target)
	p.mu.Lock()
	_, alive := p.links[l]
	if err != nil || !alive {
		delete(p.links, l)
		p.mu.Unlock()
		resetConn(l.client)
		if server != nil {
			server.Close()
		}
		return
	}
	l.server = server
	p.mu.Unlock()
	p.wg.Go(func() { p.pipe(l, server, l.client) })
	p.pipe(l, l.client, server)
}

// waitPass blocks while the proxy does not pass; false means it closed.
func (p *Proxy) waitPass() bool {
	for {
		p.mu.Lock()
		mode, passing := p.mode, p.passing
		p.mu.Unlock()
		if mode == Pass {
			return true
		}
		select {
		case <-passing:
		case <-p.done:
			return false
		}
	}
}

// pipe copies src to dst. Once the link is frozen it forwards nothing more,
// reads nothing more and closes nothing: the connection stays open and
// silent until Close.
func (p *Proxy) pipe(l *link, dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-l.freeze:
			<-p.done
			return
		default:
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil && err == nil {
				err = werr
			}
		}
		if err != nil {
			p.mu.Lock()
			if l.frozen {
				p.mu.Unlock()
				<-p.done
				return
			}
			delete(p.links, l)
			p.mu.Unlock()
			l.close()
			return
		}
	}
}

func (l *link) close() {
	l.client.Close()
	if l.server != nil {
		l.server.Close()
	}
}

// reset closes both ends with a TCP reset rather than a FIN.
func (l *link) reset() {
	resetConn(l.client)
	if l.server != nil {
		resetConn(l.server)
	}
}

// resetConn closes c with a RST: with a zero linger the kernel drops what
// is unsent and resets the connection.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}
