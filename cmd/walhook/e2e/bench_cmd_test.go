package e2e_test

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestBenchCommand runs `walhook bench` small: every scenario completes on
// its own throwaway cluster and the summary names each measure. The figures
// themselves are not asserted: they live in docs/benchmarks.md.
func TestBenchCommand(t *testing.T) {
	out, code := run(t, 5*time.Minute, "bench", "-scenarios", "throughput,fanout,latency,outage,bigtx",
		"-events", "300", "-batch", "100", "-latency-events", "30", "-backlog", "300", "-bigtx", "2000", "-runs", "2", "-preload", "40", "-sidecar", binary)
	if code != 0 {
		t.Fatalf("walhook bench exited %d:\n%s", code, out)
	}
	for _, want := range []string{
		"fsync=on",
		"sidecar " + binary,
		"run 2: events/s end to end (300 users, 100-row tx)",
		"deliveries/s end to end, 3 endpoints",
		"commit to receipt, 30 single-row commits at 100/s",
		"run 2: the same, from the commit's return to the application",
		"of the commits themselves took over 25 ms",
		"events/s captured, receiver refusing (300 users",
		"deliveries/s draining the backlog once back",
		"first delivery after the receiver is back",
		"one 2000-row transaction",
		"sidecar peak RSS (VmHWM)",
		"0 bad signatures",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// -preload gives each of these scenarios its history.
	for _, scenario := range []string{"throughput", "fanout", "latency"} {
		if !regexp.MustCompile(`(?m)^\s*` + scenario + `\s+preloaded 40 delivered events`).MatchString(out) {
			t.Errorf("%s did not preload 40 events:\n%s", scenario, out)
		}
	}
	// Each delivery is matched to its commit's return by the user id.
	if strings.Contains(out, "no deliveries") {
		t.Errorf("a latency row found no deliveries to measure:\n%s", out)
	}
}

// TestBenchRejectsUnknownScenario: a typo is a usage error, not a silent skip.
func TestBenchRejectsUnknownScenario(t *testing.T) {
	out, code := run(t, time.Minute, "bench", "-scenarios", "throughput,latncy")
	if code != 2 || !strings.Contains(out, `unknown scenario "latncy"`) {
		t.Fatalf("exit %d, output:\n%s\nwant exit 2 naming the scenario", code, out)
	}
}
