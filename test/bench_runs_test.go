package test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBenchProvisionRuns runs `tacline bench provision --runs 2`: two runs,
// each on a fresh ledger that passes its check, added up in the total
// (devices summed, p99 the worse run's), the median of their p99 between
// them, each server running with the GOMAXPROCS --server-gomaxprocs gave
// it (as its /metrics says); --runs refuses 0 and --prefill, and
// --server-gomaxprocs a negative count, naming the flag.
func TestBenchProvisionRuns(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bench")
	type run struct {
		Devices  int      `json:"devices"`
		Errors   int      `json:"errors"`
		P99ms    float64  `json:"p99_ms"`
		LedgerOK bool     `json:"ledger_ok"`
		BatchMs  float64  `json:"ledger_batch_ms"`
		Steal    *float64 `json:"cpu_steal_share"`
		Procs    int      `json:"server_gomaxprocs"`
	}
	var res struct {
		Runs   []run   `json:"runs"`
		Total  run     `json:"total"`
		Median float64 `json:"p99_ms_median"`
	}
	r := benchJSON(t, &res, "provision", "--runs", "2", "--duration", "1s", "--stations", "4", "--server-gomaxprocs", "1", "--dir", dir)
	if len(res.Runs) != 2 {
		t.Fatalf("%d runs reported, want 2:\n%s", len(res.Runs), r.stdout)
	}
	a, b := res.Runs[0], res.Runs[1]
	for i, x := range res.Runs {
		if x.Devices == 0 || x.Errors != 0 || !x.LedgerOK || x.BatchMs <= 0 {
			t.Errorf("run %d: %+v, want devices, no errors, a sound ledger and its batches timed", i+1, x)
		}
		if x.Procs != 1 {
			t.Errorf("run %d: the server reports GOMAXPROCS %d, want the 1 --server-gomaxprocs gave it", i+1, x.Procs)
		}
		if x.Steal == nil || *x.Steal < 0 || *x.Steal >= 1 {
			t.Errorf("run %d: cpu_steal_share %v, want a share of the machine's CPU time in [0, 1)", i+1, x.Steal)
		}
	}
	if res.Total.Devices != a.Devices+b.Devices || res.Total.P99ms != max(a.P99ms, b.P99ms) || !res.Total.LedgerOK {
		t.Errorf("total %+v, want the runs' devices summed and the worse p99 of %+v and %+v", res.Total, a, b)
	}
	if res.Median != (a.P99ms+b.P99ms)/2 {
		t.Errorf("median p99 %v, want %v", res.Median, (a.P99ms+b.P99ms)/2)
	}
	for _, c := range []struct {
		args  []string
		field string
	}{{[]string{"--runs", "0"}, "runs"}, {[]string{"--runs", "2", "--prefill", "10"}, "runs"}, {[]string{"--server-gomaxprocs", "-1"}, "server-gomaxprocs"}} {
		r := tacline(t, time.Minute, append([]string{"bench", "provision", "--dir", dir}, c.args...)...)
		if r.code == 0 || !strings.Contains(r.stderr, "invalid_input ("+c.field+")") {
			t.Errorf("bench provision %v: exit %d, stderr %q; want invalid_input naming %s", c.args, r.code, r.stderr, c.field)
		}
	}
}
