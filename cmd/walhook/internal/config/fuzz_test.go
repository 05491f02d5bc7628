package config_test

import (
	"os"
	"strings"
	"testing"

	"github.com/walhook/walhook/cmd/walhook/internal/config"
)

// FuzzParse: whatever the bytes, Parse returns either a config or an error,
// never both, never a panic, and a config it returns is usable.
func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile("../../../../config.example.yaml"); err == nil {
		f.Add(data)
	}
	f.Add([]byte(head))
	lookup := env(map[string]string{
		"DATABASE_URL":       "postgres://walhook@127.0.0.1:5432/app",
		"CRM_WEBHOOK_SECRET": secret,
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := config.Parse("fuzz.yaml", data, lookup)
		switch {
		case err == nil && cfg == nil:
			t.Fatal("no config and no error")
		case err != nil && cfg != nil:
			t.Fatal("a config and an error")
		case err != nil:
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if len(cfg.Endpoints) == 0 || cfg.Database.URL == "" || len(cfg.EventTypes()) != 3 {
			t.Fatalf("incomplete config: %v", cfg)
		}
		for _, ep := range cfg.Endpoints {
			if ep.Name == "" || len(ep.Secrets) == 0 || len(ep.Events) == 0 || ep.Timeout <= 0 ||
				ep.MaxAttempts < 1 || ep.Backoff.Initial > ep.Backoff.Max {
				t.Fatalf("endpoint not resolved: %+v", ep)
			}
		}
	})
}
