package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/tacline/tacline/lifecycle"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// TestIteratorContracts holds the streaming reads to their documented
// contract on both databases: every row once, and an error from fn stops
// the walk and comes back as it is.
func TestIteratorContracts(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 99)
		for _, id := range []string{"r1", "r2", "r3"} {
			if _, err := reserve(db, id, "A", 2); err != nil {
				t.Fatal(err)
			}
		}
		states := map[uint64]lifecycle.State{}
		if err := db.IMEIStates(ctx, func(n uint64, s lifecycle.State, _ []byte) error { states[n] = s; return nil }); err != nil {
			t.Fatal(err)
		}
		if len(states) != 6 {
			t.Fatalf("IMEIStates saw %d rows, want 6: %v", len(states), states)
		}
		for n, s := range states {
			if s != store.StateReserved {
				t.Fatalf("IMEI %d: state %q, want RESERVED", n, s)
			}
		}
		stop := errors.New("stop")
		calls := 0
		err := db.IMEIStates(ctx, func(uint64, lifecycle.State, []byte) error { calls++; return stop })
		if err != stop || calls != 1 {
			t.Fatalf("IMEIStates with a failing fn: err %v after %d calls, want the same error after 1", err, calls)
		}
		calls = 0
		err = db.CatalogTACs(ctx, func(uint32) error { calls++; return stop })
		if err != stop || calls != 1 {
			t.Fatalf("CatalogTACs with a failing fn: err %v after %d calls", err, calls)
		}
		// The audit log is not attached here: the leaf iterator walks nothing
		// and never calls fn.
		if err := db.AuditLeaves(ctx, 0, 10, func(int64, []byte) error { return stop }); err != nil {
			t.Fatalf("AuditLeaves over an empty log: %v", err)
		}
	})
}
