package main

import (
	"context"
	"fmt"
	"io"

	"github.com/walhook/walhook/dispatch/signature"
)

// runSecret implements `walhook secret`: prints a new whsec_ secret on its own
// line, ready for an endpoint's secrets list. It goes to stdout only, so that
// `walhook secret > file` keeps it out of terminals and logs.
func runSecret(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("secret", stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: walhook secret

Prints a new Standard Webhooks secret (whsec_ and 32 random bytes in base64)
for an endpoint's secrets. During a rotation, list the new one next to the old
one: walhook signs with both until the old one is removed.
`)
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	secret, err := signature.NewSecret()
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(stdout, secret); err != nil {
		return fmt.Errorf("write secret: %w", err)
	}
	return nil
}
