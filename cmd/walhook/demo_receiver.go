package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/walhook/walhook/dispatch/signature"
	"github.com/walhook/walhook/testenv"
)

// lockedWriter serializes writes: the receiver's handlers print concurrently
// with each other and with the script.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// demoReceiver is the receiving application: it verifies every request with
// the signature package, fails the first attempt of the first update on
// purpose, and prints a line per request.
type demoReceiver struct {
	*testenv.Receiver
	out      io.Writer
	verifier *signature.Verifier
	password []byte

	mu          sync.Mutex
	verified    int // requests whose signature checked out
	badSig      int // requests whose signature did not
	acked       int // requests answered 2xx
	failedOnce  bool
	leaks       int    // requests whose body held password_hash or its value
	updatedBody []byte // the user.updated body that was acknowledged
}

func newDemoReceiver(out io.Writer, secret, password string) (*demoReceiver, error) {
	v, err := signature.NewVerifier(secret)
	if err != nil {
		return nil, err
	}
	r := &demoReceiver{out: out, verifier: v, password: []byte(password)}
	r.Receiver = testenv.NewReceiver(r.respond)
	return r, nil
}

// respond answers one request; testenv calls it concurrently.
func (r *demoReceiver) respond(req testenv.Request) (int, http.Header, []byte) {
	var ev struct {
		Type string
		Data struct{ ID json.RawMessage }
	}
	json.Unmarshal(req.Body, &ev) // a body that is not an event prints with blanks
	verr := r.verifier.Verify(req.Header, req.Body)

	r.mu.Lock()
	defer r.mu.Unlock()
	if bytes.Contains(req.Body, r.password) || bytes.Contains(req.Body, []byte("password_hash")) {
		r.leaks++
	}
	status, note, body := http.StatusOK, "signature ok", []byte("ok")
	switch {
	case verr != nil:
		r.badSig++
		status, note, body = http.StatusUnauthorized, "signature FAILED: "+verr.Error(), []byte("bad signature")
	case strings.HasSuffix(ev.Type, ".updated") && req.Attempt == 1 && !r.failedOnce:
		r.verified++
		r.failedOnce = true
		status, body = http.StatusServiceUnavailable, []byte("demo: failing this attempt on purpose")
	default:
		r.verified++
		r.acked++
		if strings.HasSuffix(ev.Type, ".updated") && r.updatedBody == nil {
			r.updatedBody = req.Body
		}
	}
	suffix := ""
	if status == http.StatusServiceUnavailable {
		suffix = "  (on purpose: walhook will retry)"
	}
	fmt.Fprintf(r.out, "receiver  %-13s %-13s user %-3s attempt %d  %s  -> %d%s\n",
		ev.Type, req.ID(), strings.Trim(string(ev.Data.ID), `"`), req.Attempt, note, status, suffix)
	return status, nil, body
}

// ackedCount is how many requests were answered 2xx so far.
func (r *demoReceiver) ackedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.acked
}
