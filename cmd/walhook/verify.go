package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/walhook/walhook/dispatch/signature"
)

// secretEnv holds the secret when no -secret flag is given, which keeps it
// out of shell history and the process list.
const secretEnv = "WALHOOK_SECRET"

const verifyUsage = `Usage: walhook verify -secret whsec_... (-headers FILE | -id ID -timestamp TS -signature SIG) [-body FILE]

Checks a captured webhook request's signature the way a receiver does and says
which check fails. The body is read raw from -body FILE or stdin: it must be the
bytes as received (no pretty-printing, no added newline).

Example:
  WALHOOK_SECRET=whsec_... walhook verify -headers headers.txt -body body.json

Flags:
`

// secretFlags collects repeated -secret values. Set never rejects a value:
// the flag package quotes a rejected value in its error, and this one is a
// secret. Values are checked later by signature.ParseSecrets, whose errors
// name a position only.
type secretFlags []string

func (s *secretFlags) String() string {
	if s == nil || len(*s) == 0 {
		return ""
	}
	return fmt.Sprintf("%d secret(s)", len(*s))
}

func (s *secretFlags) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// runVerify implements `walhook verify`: checks a captured request's
// signature and says why it fails.
func runVerify(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("verify", stderr)
	var secretArgs secretFlags
	fs.Var(&secretArgs, "secret", "endpoint `secret` (whsec_...); repeat for several (default $"+secretEnv+")")
	id := fs.String("id", "", "webhook-id header `value`")
	timestamp := fs.String("timestamp", "", "webhook-timestamp header `value` (Unix seconds)")
	sig := fs.String("signature", "", "webhook-signature header `value` (v1,<base64> ...)")
	headersPath := fs.String("headers", "", "`file` of captured \"Name: value\" header lines; -id, -timestamp and -signature override it")
	bodyPath := fs.String("body", "", "`file` with the raw body as received (default stdin)")
	tolerance := fs.Duration("tolerance", signature.DefaultTolerance, "how far the timestamp may be from now; 0 skips the time check, for old captures")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), verifyUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		// Not quoted: a secret given without -secret lands here.
		return usageError{fmt.Sprintf("verify: unexpected argument #1 of %d; the body goes in -body FILE or on stdin", fs.NArg())}
	}
	if *tolerance < 0 {
		return usageError{"verify: -tolerance must not be negative (0 skips the time check)"}
	}

	secrets, err := parseSecretFlags("verify", secretArgs)
	if err != nil {
		return err
	}
	h, err := capturedHeaders(*headersPath, *id, *timestamp, *sig)
	if err != nil {
		return err
	}
	body, err := readBody(*bodyPath, stdin, stderr)
	if err != nil {
		return err
	}

	v := &signature.Verifier{Secrets: secrets, Tolerance: *tolerance, IgnoreTimestamp: *tolerance == 0}
	i, err := v.Match(h, body)
	if err != nil {
		return explainVerify(err, v, h, body)
	}
	fmt.Fprintf(stdout, "signature valid (secret #%d matched)\n", i+1)
	if v.IgnoreTimestamp {
		fmt.Fprintln(stderr, "note: timestamp not checked (-tolerance 0); a receiver would also check it")
	}
	return nil
}

// parseSecretFlags parses the -secret flags of command cmd, or
// $WALHOOK_SECRET (whitespace separated, for a rotation) when there are none.
func parseSecretFlags(cmd string, flags secretFlags) ([]signature.Secret, error) {
	raw, source := []string(flags), "-secret"
	if len(raw) == 0 {
		raw, source = strings.Fields(os.Getenv(secretEnv)), secretEnv
	}
	if len(raw) == 0 {
		return nil, usageError{cmd + ": no secret: pass -secret whsec_... or set " + secretEnv}
	}
	secrets, err := signature.ParseSecrets(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: check %s: %w", cmd, source, err)
	}
	return secrets, nil
}

// capturedHeaders assembles the request's headers from the -headers file and
// the flags, the flags winning so that one value of a capture can be tried
// with another.
func capturedHeaders(path, id, timestamp, sig string) (http.Header, error) {
	if path == "" && id == "" && timestamp == "" && sig == "" {
		return nil, usageError{"verify: no headers: pass -headers FILE, or -id, -timestamp and -signature"}
	}
	h := http.Header{}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("verify: read headers: %w", err)
		}
		if h, err = parseHeaderLines(string(data)); err != nil {
			return nil, fmt.Errorf("verify: parse headers file %s: %w", path, err)
		}
	}
	for name, value := range map[string]string{signature.HeaderID: id, signature.HeaderTimestamp: timestamp, signature.HeaderSignature: sig} {
		if value != "" {
			h.Set(name, strings.TrimSpace(value))
		}
	}
	return h, nil
}

// parseHeaderLines reads "Name: value" lines as request bins, proxies and
// browser tools show them: an HTTP request line first is skipped, as are
// HTTP/2 pseudo-headers (":method: POST"), and a blank line after the headers
// ends them, since what follows in a raw capture is the body.
func parseHeaderLines(text string) (http.Header, error) {
	h := http.Header{}
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case strings.TrimSpace(line) == "":
			if len(h) > 0 {
				return h, nil
			}
			continue
		case len(h) == 0 && isRequestLine(line), strings.HasPrefix(line, ":"):
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(name) == "" || strings.ContainsAny(strings.TrimSpace(name), " \t") {
			return nil, fmt.Errorf("line %d: want \"Name: value\"", n+1)
		}
		h.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	if len(h) == 0 {
		return nil, errors.New("no \"Name: value\" lines found")
	}
	return h, nil
}

// isRequestLine reports whether line looks like "POST /hooks HTTP/1.1".
func isRequestLine(line string) bool {
	f := strings.Fields(line)
	return len(f) == 3 && strings.HasPrefix(f[2], "HTTP/")
}

// readBody reads the body raw: not a byte is trimmed, because the signature
// covers every one of them.
func readBody(path string, stdin io.Reader, stderr io.Writer) ([]byte, error) {
	if path != "" && path != "-" {
		body, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("verify: read body: %w", err)
		}
		return body, nil
	}
	if f, ok := stdin.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprintln(stderr, "reading the body from the terminal (end with Ctrl-D); -body FILE reads it from a file")
		}
	}
	body, err := io.ReadAll(stdin)
	if err != nil {
		return nil, fmt.Errorf("verify: read body from stdin: %w", err)
	}
	return body, nil
}
