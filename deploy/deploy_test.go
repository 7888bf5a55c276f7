// Package deploy holds what operators install next to tacline: Prometheus
// alerting rules (prometheus/alerts.yml, unit-tested in
// prometheus/alerts_test.yml), a Grafana dashboard (grafana/tacline.json)
// and the Debian package (debian/, built by `make deb`). Its tests run
// promtool on the rules, check every metric name the rules and the
// dashboard use against the /metrics of a real server process, and build
// and install the Debian package.
package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tacline/tacline/devenv"
)

// promtool returns the path of promtool; a missing one fails the test
// (scripts/ensure-tools.sh installs Debian's prometheus package).
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed: run scripts/ensure-tools.sh (installs Debian's prometheus package)")
	}
	return p
}

func TestAlertRules(t *testing.T) {
	t.Parallel()
	pt := promtool(t)
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.Command(pt, args...)
		cmd.Dir = "prometheus"
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "SUCCESS") {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// metricName finds the metric names in a PromQL expression (tacline's own
// and the Go and process collectors'; `up` is Prometheus's).
var metricName = regexp.MustCompile(`\b(?:tacline|go|process)_[a-z0-9_]+\b`)

func alertExprs(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			out["alert "+r.Alert] = r.Expr
		}
	}
	return out
}

func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("grafana/tacline.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			out[fmt.Sprintf("panel %q %s", p.Title, tg.RefID)] = tg.Expr
		}
	}
	return out
}

// Every metric the alerts and the dashboard query is exported by a real
// server: one with a register (the simulator), that provisioned devices
// and answered an error, so that every labelled family has a sample.
func TestMetricNamesLive(t *testing.T) {
	t.Parallel()
	queries := alertExprs(t)
	for k, v := range dashboardExprs(t) {
		queries[k] = v
	}
	if len(queries) < 30 {
		t.Fatalf("only %d queries found in the alerts and the dashboard", len(queries))
	}
	bin := taclineBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env, err := devenv.Setup(ctx, devenv.Options{Dir: t.TempDir(), Stations: 1})
	if err != nil {
		t.Fatal(err)
	}
	sim, err := devenv.StartRegisterSim(ctx, bin, filepath.Join(env.Dir, "register.db"), filepath.Join(env.Dir, "register.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Kill()
	if err := env.SetRegisterURL(sim.URL); err != nil {
		t.Fatal(err)
	}
	proc, err := devenv.StartServer(ctx, bin, env.ConfigPath, filepath.Join(env.Dir, "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Kill()
	if _, err := devenv.ProvisionDevices(ctx, env, proc.URL, 2, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	op, err := devenv.RoleClient(env, "operator")
	if err != nil {
		t.Fatal(err)
	}
	// An operator may not provision: one error answer (forbidden).
	if resp, err := op.Post(proc.URL+"/v1/provision", "application/json", strings.NewReader("{}")); err == nil {
		resp.Body.Close()
	}
	var names map[string]bool
	var vals map[string]string
	for {
		names, vals = scrapeNames(t, op, proc.URL+"/metrics")
		if names["tacline_register_results_total"] && names["tacline_audit_checkpoint_size"] && vals["tacline_ledger_warm_done"] == "1" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the register never answered; metrics: %v", sorted(names))
		case <-time.After(200 * time.Millisecond):
		}
	}
	// The scrape-time gauges say what is true of this server.
	for name, want := range map[string]string{"tacline_hsm_up": "1", "tacline_ops_status_up": "1", "tacline_register_status_up": "1"} {
		if vals[name] != want {
			t.Errorf("%s = %q, want %s", name, vals[name], want)
		}
	}
	// The SQLite ledger's key indexes were read at start-up (a root page
	// each at least).
	if b, _ := strconv.ParseFloat(vals["tacline_ledger_warm_bytes"], 64); b < 1024 {
		t.Errorf("tacline_ledger_warm_bytes = %q once the warm-up ended, want the indexes' pages", vals["tacline_ledger_warm_bytes"])
	}
	// and the OS pages holding them are kept mapped (one at least).
	if b, _ := strconv.ParseFloat(vals["tacline_ledger_warm_mapped_bytes"], 64); b < 4096 {
		t.Errorf("tacline_ledger_warm_mapped_bytes = %q once the warm-up ended, want the pages holding the indexes", vals["tacline_ledger_warm_mapped_bytes"])
	}
	if vals["tacline_audit_events"] == "" || vals["tacline_audit_events"] == "0" {
		t.Errorf("tacline_audit_events = %q after provisioning", vals["tacline_audit_events"])
	}
	used := 0
	for where, expr := range queries {
		found := metricName.FindAllString(expr, -1)
		if len(found) == 0 && !strings.Contains(expr, "up{") {
			t.Errorf("%s names no metric: %s", where, expr)
		}
		for _, n := range found {
			used++
			if !names[n] {
				t.Errorf("%s queries %s, which the server does not export", where, n)
			}
		}
	}
	t.Logf("%d queries, %d metric references, all exported (%d names on /metrics)", len(queries), used, len(names))
}

// scrapeNames returns the sample names of a /metrics page, and the values
// of its unlabelled samples.
func scrapeNames(t *testing.T, c *http.Client, url string) (map[string]bool, map[string]string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s %v", resp.Status, err)
	}
	out, vals := map[string]bool{}, map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name := line[:strings.IndexAny(line, "{ ")]
		out[name] = true
		if n, v, ok := strings.Cut(line, " "); ok && n == name {
			vals[name] = v
		}
	}
	return out, vals
}

func sorted(m map[string]bool) []string {
	var s []string
	for k := range m {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// taclineBin is TACLINE_BIN, or a binary built into the test's directory.
func taclineBin(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("TACLINE_BIN"); b != "" {
		abs, err := filepath.Abs(b)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	bin := filepath.Join(t.TempDir(), "tacline")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/tacline")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
