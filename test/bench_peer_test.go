package test

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"
)

// TestBenchPeer runs `tacline bench peer --json` briefly on SQLite, with
// its open-loop phase at a fifth of step-ca's closed-loop rate, and checks
// that every side measured something, that the phase offered that share,
// and that the ledger stayed sound (figures go in docs/benchmarks.md, not
// in assertions).
func TestBenchPeer(t *testing.T) {
	r := tacline(t, 3*time.Minute, "bench", "peer", "--db", "sqlite", "--round", "1s", "--rounds", "1", "--stations", "4",
		"--offered-share", "0.2", "--dir", filepath.Join(t.TempDir(), "peer"), "--json")
	if r.code != 0 {
		t.Fatalf("tacline bench peer exited %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, r.stdout)
	}
	for _, k := range []string{"stepca_certs_per_second", "stepca_cpu_us_per_cert", "tacline_devices_per_second", "tacline_cpu_us_per_device",
		"via_stepca_devices_per_second", "ratio", "cpu_ratio", "stepca_p50_ms", "stepca_p99_ms", "tacline_p50_ms", "tacline_p99_ms",
		"via_stepca_p50_ms", "via_stepca_p99_ms", "offered_rate", "open_stepca_certs_per_second", "open_stepca_p50_ms", "open_stepca_p99_ms", "open_stepca_cpu_us_per_cert",
		"open_tacline_devices_per_second", "open_tacline_p50_ms", "open_tacline_p99_ms", "open_tacline_cpu_us_per_device"} {
		if v, ok := res[k].(float64); !ok || v <= 0 {
			t.Errorf("%s = %v, want a positive number", k, res[k])
		}
	}
	offered, _ := res["offered_rate"].(float64)
	stepca, _ := res["stepca_certs_per_second"].(float64)
	if offered < 0.19*stepca || offered > 0.21*stepca {
		t.Errorf("offered_rate %v, want a fifth of step-ca's closed-loop %v", offered, stepca)
	}
	if st, ok := res["cpu_steal_share"].(float64); !ok || st < 0 || st >= 1 {
		t.Errorf("cpu_steal_share %v, want a share of the machine's CPU time in [0, 1)", res["cpu_steal_share"])
	}
	if res["ledger_ok"] != true || res["errors"] != float64(0) || res["load_average"] == "" {
		t.Errorf("ledger_ok %v, errors %v, load_average %v", res["ledger_ok"], res["errors"], res["load_average"])
	}
}
