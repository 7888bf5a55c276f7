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

// TestBatchObserverSeesEveryMember: the batch observer (the server's
// ledger metrics) is told of every batch, with each member's wait in the
// queue and the batch's run. One Commit is held inside its transaction
// while two more queue behind it: the first batch's run lasts at least the
// hold, and the two waited at least from their queueing to its release.
func TestBatchObserverSeesEveryMember(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		var mu sync.Mutex
		var seen []store.BatchTiming
		db.SetBatchObserver(func(bt store.BatchTiming) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, bt)
		})
		ctx := context.Background()
		hold, held := make(chan struct{}), make(chan struct{})
		errs := make(chan error, 3)
		go func() {
			errs <- db.Commit(ctx, func(tx *store.Tx) error {
				close(held)
				<-hold
				return nil
			})
		}()
		<-held
		start := time.Now()
		for i := 0; i < 2; i++ {
			go func() { errs <- db.Commit(ctx, func(tx *store.Tx) error { return nil }) }()
		}
		for db.QueuedMembers() < 2 {
			time.Sleep(time.Millisecond)
		}
		queued := time.Now()
		time.Sleep(20 * time.Millisecond)
		close(hold)
		for i := 0; i < 3; i++ {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		mu.Lock()
		got := append([]store.BatchTiming(nil), seen...)
		mu.Unlock()
		if len(got) != 2 || len(got[0].Queued) != 1 || len(got[1].Queued) != 2 {
			t.Fatalf("observed %+v, want a batch of 1 then a batch of 2", got)
		}
		if minHeld := queued.Sub(start) + 20*time.Millisecond; got[0].Run < minHeld {
			t.Fatalf("the held batch ran %s, but it was held at least %s", got[0].Run, minHeld)
		}
		for _, q := range got[1].Queued {
			if q < 20*time.Millisecond {
				t.Fatalf("a member queued behind the held batch waited %s, at least 20ms expected", q)
			}
		}

		db.SetBatchObserver(nil)
		if err := db.Commit(ctx, func(tx *store.Tx) error { return nil }); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(seen) != 2 {
			t.Fatalf("after SetBatchObserver(nil) the observer was still called (%d batches seen)", len(seen))
		}
	})
}
