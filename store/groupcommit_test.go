package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// TestGatherWaitsOnlyForReturningCallers: after a batch whose callers do not
// come back (Commit calls and bindings end their requests), the next member
// is committed without waiting for the linger, however long: the committer
// waits only for the callers of the previous batch's reservations (their
// bindings). The linger is an hour here, so holding the member for it
// would outlast the deadline below.
func TestGatherWaitsOnlyForReturningCallers(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		db.SetLinger(time.Hour)
		ctx := context.Background()
		noop := func(tx *store.Tx) error { return nil }

		// Batch 1: one Commit, held inside its transaction until two more
		// Commits are queued behind it; batch 2: those two.
		hold, held := make(chan struct{}), make(chan struct{})
		var once sync.Once
		errs := make(chan error, 3)
		go func() {
			errs <- db.Commit(ctx, func(tx *store.Tx) error {
				once.Do(func() { close(held) })
				<-hold
				return nil
			})
		}()
		<-held
		for i := 0; i < 2; i++ {
			go func() { errs <- db.Commit(ctx, noop) }()
		}
		for db.QueuedMembers() < 2 {
			time.Sleep(time.Millisecond)
		}
		batches0, _ := db.BatchStats()
		close(hold)
		for i := 0; i < 3; i++ {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		batches, members := db.BatchStats()
		if batches != batches0+1 || members != 3 {
			t.Fatalf("the two queued Commits ran in %d batches (%d members in all), want one batch of two", batches-batches0, members)
		}

		// The previous batch held two members, none of which comes back:
		// the next one runs at once.
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := db.Commit(dctx, noop); err != nil {
			t.Fatalf("a Commit after a batch of two Commits: %v (held for the linger)", err)
		}
	})
}
