package bench

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// A prefill fills only a new ledger: the second one on the same ledger
// (which now holds devices) is refused before it writes anything, and the
// first one left a ledger that passes `ledger check` with every IMEI of
// its devices (a last batch shorter than the others included).
func TestPrefillRefusesLedgerInUse(t *testing.T) {
	ctx := context.Background()
	env, err := devenv.Setup(ctx, devenv.Options{Dir: filepath.Join(t.TempDir(), "env"), Stations: 2, Driver: store.SQLite})
	if err != nil {
		t.Fatal(err)
	}
	const n = prefillBatch + 7
	res, err := Prefill(ctx, env, n, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Devices != n || res.AuditSize < 2*n {
		t.Fatalf("prefill wrote %d devices and an audit log of %d, want %d and at least %d", res.Devices, res.AuditSize, n, 2*n)
	}
	rep, err := env.CheckLedger(ctx)
	if err != nil || !rep.OK() || rep.IMEIs != 2*n {
		t.Fatalf("ledger check: %+v, %v; want ok with %d IMEIs", rep, err, 2*n)
	}
	_, err = Prefill(ctx, env, 10, nil)
	if tacerr.CodeOf(err) != tacerr.InvalidState {
		t.Fatalf("second prefill: %v, want invalid_state", err)
	}
	rep, err = env.CheckLedger(ctx)
	if err != nil || rep.IMEIs != 2*n {
		t.Fatalf("after the refused prefill: %d IMEIs, %v; want %d (nothing written)", rep.IMEIs, err, 2*n)
	}
}

// TestWithSuffix: the empty phase's profile goes beside the prefilled
// one's, before its extension; no profile stays no profile.
func TestWithSuffix(t *testing.T) {
	for in, want := range map[string]string{"var/cpu.prof": "var/cpu-empty.prof", "cpu": "cpu-empty", "": ""} {
		if got := withSuffix(in, "-empty"); got != want {
			t.Errorf("withSuffix(%q) = %q, want %q", in, got, want)
		}
	}
}
