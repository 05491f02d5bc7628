package e2e_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"

	"github.com/walhook/walhook/testenv"
)

// documented is one row of the series table in docs/metrics.md.
type documented struct {
	kind   string   // counter, gauge or histogram
	labels []string // sorted
}

// documentedSeries reads the series table of docs/metrics.md, so that the
// page users read is the list this test holds walhook to.
func documentedSeries(t *testing.T) map[string]documented {
	t.Helper()
	text, err := readFile("../../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| (counter|gauge|histogram) \\| ([^|]+) \\|")
	out := map[string]documented{}
	for _, m := range row.FindAllStringSubmatch(text, -1) {
		var labels []string
		for _, l := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(m[3], -1) {
			labels = append(labels, l[1])
		}
		sort.Strings(labels)
		out[m[1]] = documented{kind: m[2], labels: labels}
	}
	if len(out) < 10 {
		t.Fatalf("docs/metrics.md lists %d series; its table did not parse", len(out))
	}
	return out
}

// scrape GETs /metrics and parses it.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return families
}

// value sums the samples of family name whose labels include want (name,
// value pairs), counting a histogram's observations, and says whether
// there was any.
func value(families map[string]*dto.MetricFamily, name string, want ...string) (float64, bool) {
	f := families[name]
	if f == nil {
		return 0, false
	}
	var sum float64
	found := false
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(want); i += 2 {
			if got[want[i]] != want[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		default:
			continue
		}
		found = true
	}
	return sum, found
}

// checkDocumented fails for each documented series missing from families,
// of another type, or with other labels than documented.
func checkDocumented(t *testing.T, families map[string]*dto.MetricFamily, docs map[string]documented) {
	t.Helper()
	for name, d := range docs {
		f := families[name]
		if f == nil {
			t.Errorf("/metrics lacks %s", name)
			continue
		}
		if got := strings.ToLower(f.GetType().String()); got != d.kind {
			t.Errorf("%s is a %s, documented as a %s", name, got, d.kind)
		}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName())
			}
			sort.Strings(labels)
			if !slices.Equal(labels, d.labels) {
				t.Errorf("%s has labels %v, documented %v", name, labels, d.labels)
				break
			}
		}
	}
}

// TestAdminEndpoints: /healthz and /readyz answer, every series that
// docs/metrics.md lists is on /metrics with its labels before anything
// happened, and the series move as events are captured, delivered, retried
// and given up.
func TestAdminEndpoints(t *testing.T) {
	addr := testenv.FreeAddr(t)
	// crm refuses each event's first attempt; dead refuses all, and gives
	// up after one attempt.
	rcv := testenv.StartReceiver(t, func(r testenv.Request) (int, http.Header, []byte) {
		if r.Attempt == 1 {
			return http.StatusServiceUnavailable, nil, nil
		}
		return http.StatusOK, nil, nil
	})
	dead := testenv.StartReceiver(t, func(testenv.Request) (int, http.Header, []byte) {
		return http.StatusInternalServerError, nil, nil
	})
	db, cfg := newSource(t, rcv, func(s *settings) {
		s.endpoints = append(s.endpoints, endpointSettings{name: "dead", url: dead.URL, extra: "    max_attempts: 1\n"})
		s.delivery += fmt.Sprintf("admin:\n  listen: %q\n", addr)
	})
	p := startAttached(t, db, cfg)

	// The slot shows active while walhook still creates it, before the
	// admin server starts: wait for the port as a probe would.
	client := &http.Client{Timeout: 30 * time.Second}
	for _, path := range []string{"/healthz", "/readyz"} {
		eventually(t, 30*time.Second, "GET "+path+" answers 200", func() (bool, string) {
			resp, err := client.Get("http://" + addr + path)
			if err != nil {
				return false, err.Error()
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK, fmt.Sprintf("%d %s", resp.StatusCode, b)
		})
	}

	docs := documentedSeries(t)
	before := scrape(t, addr)
	checkDocumented(t, before, docs)

	const n = 20
	insertUsers(t, db, n, 10)
	eventually(t, 90*time.Second, "every delivery settled", func() (bool, string) {
		var pending, delivered, failed int64
		err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE status = 'pending'),
			count(*) FILTER (WHERE status = 'delivered'), count(*) FILTER (WHERE status = 'failed')
			FROM walhook.deliveries`).Scan(&pending, &delivered, &failed)
		if err != nil {
			return false, err.Error()
		}
		return pending == 0 && delivered == n && failed == n, fmt.Sprintf("%d pending, %d delivered, %d failed", pending, delivered, failed)
	})
	after := scrape(t, addr)
	checkDocumented(t, after, docs)

	moved := []struct {
		name   string
		labels []string
		delta  float64
	}{
		{"walhook_events_stored_total", nil, n},
		{"walhook_delivery_attempts_total", []string{"endpoint", "crm", "outcome", "retry"}, n},
		{"walhook_delivery_attempts_total", []string{"endpoint", "crm", "outcome", "delivered"}, n},
		{"walhook_delivery_attempts_total", []string{"endpoint", "dead", "outcome", "failed"}, n},
		{"walhook_delivery_attempt_duration_seconds", []string{"endpoint", "crm"}, 2 * n},
		{"walhook_delivery_attempt_duration_seconds", []string{"endpoint", "dead"}, n},
		{"walhook_delivery_latency_seconds", []string{"endpoint", "crm"}, n},
		{"walhook_deliveries_failed", []string{"endpoint", "dead"}, n},
	}
	for _, m := range moved {
		v0, _ := value(before, m.name, m.labels...)
		v1, ok := value(after, m.name, m.labels...)
		if !ok || v1-v0 != m.delta {
			t.Errorf("%s%v moved from %v to %v (present %v), want +%v", m.name, m.labels, v0, v1, ok, m.delta)
		}
	}
	for _, m := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"walhook_capture_holder", nil, 1},
		{"walhook_deliveries_pending", []string{"endpoint", "crm"}, 0},
		{"walhook_oldest_pending_seconds", []string{"endpoint", "crm"}, 0},
		{"walhook_endpoint_enabled", []string{"endpoint", "crm"}, 1},
		{"walhook_database_query_up", []string{"query", "slot_lag"}, 1},
		{"walhook_database_query_up", []string{"query", "delivery_status"}, 1},
	} {
		if v, ok := value(after, m.name, m.labels...); !ok || v != m.want {
			t.Errorf("%s%v = %v (present %v), want %v", m.name, m.labels, v, ok, m.want)
		}
	}
	if v, _ := value(after, "walhook_confirmed_lsn"); v == 0 {
		t.Error("walhook_confirmed_lsn is 0 after deliveries")
	}
	checkAlertRules(t, after, docs)

	// A second process on the same configuration waits for the slot: a
	// standby, which its capture role says.
	text, err := readFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	standbyAddr := testenv.FreeAddr(t)
	standbyCfg := cfg + ".standby"
	writeFile(t, standbyCfg, strings.Replace(text, addr, standbyAddr, 1))
	standby := start(t, "run", "-config", standbyCfg)
	eventually(t, 60*time.Second, "the standby's admin server answers", func() (bool, string) {
		resp, err := http.Get("http://" + standbyAddr + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	eventually(t, 60*time.Second, "the second process waits for the slot", func() (bool, string) {
		return strings.Contains(standby.out.String(), "active in another process"), "no standby message yet"
	})
	s := scrape(t, standbyAddr)
	checkDocumented(t, s, docs)
	if v, ok := value(s, "walhook_capture_holder"); !ok || v != 0 {
		t.Errorf("standby: walhook_capture_holder = %v (present %v), want 0", v, ok)
	}
	if v, ok := value(after, "walhook_capture_holder"); !ok || v != 1 {
		t.Errorf("capturing process: walhook_capture_holder = %v, want 1", v)
	}
	standby.stop(t)
	p.stop(t)
}

// metricName finds the series names in a PromQL expression.
var metricName = regexp.MustCompile(`\b(?:walhook|go|process)_[a-z0-9_]+\b`)

// checkAlertRules reads deploy/prometheus/alerts.yaml and checks that each
// rule is complete and that its expression names only series that are
// documented and on /metrics. With promtool on PATH, it also checks the
// rules' PromQL and runs their unit tests (alerts_test.yaml), which show
// that each alert fires on the series it is meant for.
func checkAlertRules(t *testing.T, families map[string]*dto.MetricFamily, docs map[string]documented) {
	t.Helper()
	const path = "../../../deploy/prometheus/alerts.yaml"
	rules := readAlertRules(t, path)
	if len(rules) < 3 {
		t.Fatalf("%s holds %d rules, want at least 3", path, len(rules))
	}
	for _, r := range rules {
		if r.Alert == "" || r.Expr == "" || r.For == "" || r.Labels["severity"] == "" ||
			r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
			t.Errorf("rule %q lacks alert, expr, for, labels.severity, annotations.summary or description", r.Alert)
		}
		names := metricName.FindAllString(r.Expr, -1)
		if len(names) == 0 {
			t.Errorf("rule %s names no walhook series: %s", r.Alert, r.Expr)
		}
		for _, name := range names {
			base := name
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(name, suffix); ok && docs[b].kind == "histogram" {
					base = b
				}
			}
			if _, ok := docs[base]; !ok {
				t.Errorf("rule %s uses %s, which docs/metrics.md does not list", r.Alert, name)
			}
			if families[base] == nil {
				t.Errorf("rule %s uses %s, which /metrics does not serve", r.Alert, name)
			}
		}
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool is not on PATH: the rules' PromQL and deploy/prometheus/alerts_test.yaml were not run")
		return
	}
	for _, args := range [][]string{{"check", "rules", "alerts.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "../../../deploy/prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// alertRule is one rule of a Prometheus rules file.
type alertRule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// readAlertRules parses a Prometheus rules file, refusing unknown keys.
func readAlertRules(t *testing.T, path string) []alertRule {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var file struct {
		Groups []struct {
			Name  string      `yaml:"name"`
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	var rules []alertRule
	for _, g := range file.Groups {
		rules = append(rules, g.Rules...)
	}
	return rules
}
