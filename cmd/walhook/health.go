package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// runHealth implements `walhook health`: a GET of the admin server's
// /healthz or /readyz that exits non-zero unless it answers 2xx. Container
// images without a shell or curl use it as their health check.
func runHealth(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("health", stderr)
	url := fs.String("url", "http://127.0.0.1:9187/healthz", "`URL` to GET")
	timeout := fs.Duration("timeout", 5*time.Second, "how long the answer may take")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return usageError{fmt.Sprintf("-url %q: %v", *url, err)}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("health check: %s answered %s", *url, resp.Status)
	}
	fmt.Fprintln(stdout, resp.Status)
	return nil
}
