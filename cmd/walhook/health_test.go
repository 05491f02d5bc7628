package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHealth: `walhook health` exits 0 on a 2xx and non-zero, naming the
// answer, on anything else: it is the image's health check.
func TestHealth(t *testing.T) {
	for _, tt := range []struct {
		status int
		ok     bool
	}{{200, true}, {503, false}} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(tt.status)
		}))
		var stdout, stderr bytes.Buffer
		err := Main(t.Context(), []string{"health", "-url", srv.URL + "/readyz"}, nil, &stdout, &stderr)
		srv.Close()
		if (err == nil) != tt.ok || (err != nil && !strings.Contains(err.Error(), "503")) {
			t.Errorf("answer %d: err = %v", tt.status, err)
		}
	}
}
