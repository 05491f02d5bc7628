package signature_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/walhook/walhook/dispatch/signature"
)

func TestMiddleware(t *testing.T) {
	v := fixedVerifier(t, vectorSecret)
	var seen [][]byte
	srv := httptest.NewServer(v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("handler read body: %v", err)
		}
		seen = append(seen, body)
		w.WriteHeader(http.StatusNoContent)
	})))
	defer srv.Close()

	post := func(h http.Header, body []byte) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for name, values := range h {
			req.Header[name] = values
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(msg)
	}

	if code, msg := post(vectorHeaders(), []byte(vectorBody)); code != http.StatusNoContent {
		t.Fatalf("valid request: status %d (%s), want 204", code, msg)
	}
	if len(seen) != 1 || string(seen[0]) != vectorBody {
		t.Fatalf("handler saw bodies %q, want the original body once", seen)
	}

	code, msg := post(vectorHeaders(), []byte(`{"test": 1}`))
	if code != http.StatusUnauthorized || !strings.Contains(msg, "no matching signature") {
		t.Errorf("tampered body: status %d (%q), want 401 naming the failed check", code, msg)
	}
	if len(seen) != 1 {
		t.Errorf("handler was called for a rejected request")
	}

	// Oversized: straight into the handler, so that the server closing the
	// connection mid-upload cannot make the test flaky.
	big := bytes.Repeat([]byte("x"), signature.MaxBodyBytes+1)
	req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(big))
	signature.SetHeaders(req.Header, mustSecrets(t, vectorSecret), vectorID, time.Unix(vectorTimestamp, 0), big)
	rec := httptest.NewRecorder()
	v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("handler was called for an oversized request")
	})).ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("body over %d bytes: status %d, want 413", signature.MaxBodyBytes, rec.Code)
	}
}
