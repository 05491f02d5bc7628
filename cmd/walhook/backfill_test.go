package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

func TestBackfillRejectsBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-chunk", "0"}, "-chunk 0"},
		{[]string{"-rate", "-5"}, "-rate -5"},
		{[]string{"-chunk", "100"}, "-config FILE is required"},
		{[]string{"extra"}, "unexpected argument"},
	} {
		var stdout, stderr bytes.Buffer
		err := Main(context.Background(), append([]string{"backfill"}, c.args...), nil, &stdout, &stderr)
		var u usageError
		if !errors.As(err, &u) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("backfill %v: %v, want a usage error with %q", c.args, err, c.want)
		}
	}
}
