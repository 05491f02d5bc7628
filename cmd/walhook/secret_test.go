package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/walhook/walhook/dispatch/signature"
)

func TestSecretPrintsANewUsableSecret(t *testing.T) {
	var seen []string
	for range 2 {
		var stdout, stderr bytes.Buffer
		if err := runSecret(context.Background(), nil, &stdout, &stderr); err != nil {
			t.Fatalf("runSecret: %v", err)
		}
		out := stdout.String()
		if !strings.HasPrefix(out, "whsec_") || !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
			t.Fatalf("stdout = %q, want one whsec_ line", out)
		}
		if stderr.Len() != 0 {
			t.Errorf("stderr = %q, want nothing", stderr.String())
		}
		secret := strings.TrimSuffix(out, "\n")
		// Usable: what it signs verifies with it.
		v, err := signature.NewVerifier(secret)
		if err != nil {
			t.Fatalf("printed secret does not parse: %v", err)
		}
		if _, err := v.Match(verifySignedHeaders(t, v.Secrets, "msg_1", []byte("{}")), []byte("{}")); err != nil {
			t.Fatalf("printed secret does not verify its own signature: %v", err)
		}
		seen = append(seen, secret)
	}
	if seen[0] == seen[1] {
		t.Fatal("two runs printed the same secret")
	}
}

func TestSecretRejectsArguments(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := runSecret(context.Background(), []string{"extra"}, &stdout, &stderr); err == nil {
		t.Fatal("runSecret accepted a positional argument")
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout = %q after an error, want nothing", stdout.String())
	}
}
