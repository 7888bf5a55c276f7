package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// TestGrantAskedLease: a site's lease request with an id HQ has seen (the
// site lost the answer) is answered with the lease granted for it, taking
// no SNRs; a new id gets a new lease; an id whose lease was returned or
// has expired, or that named another pool, is refused (conflict on
// request_id: the site takes a new id); a malformed id is invalid_input.
// None of these leases waits for the site (only an operator's do).
func TestGrantAskedLease(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 99)
		enrollSite(t, db, "s1")
		now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		db.SetClock(func() time.Time { return now })
		grant := func(id string, size int64) (store.Lease, error) {
			return db.GrantAskedLease(ctx, "s1", id, "A", size, time.Hour, store.LeaseLimits{MaxHeld: 2}, "site:s1")
		}
		l1, err := grant("ask-1", 10)
		if err != nil {
			t.Fatal(err)
		}
		// The answer was lost; the site asks again with the same id (and
		// a size its policy may have changed meanwhile).
		again, err := grant("ask-1", 20)
		if err != nil || again.ID != l1.ID || again.SNRStart != l1.SNRStart || again.SNREnd != l1.SNREnd {
			t.Fatalf("the same request again = %+v, %v; want lease %+v", again, err, l1)
		}
		l2, err := grant("ask-2", 10)
		if err != nil || l2.ID == l1.ID || l2.SNRStart != l1.SNREnd+1 {
			t.Fatalf("a new request = %+v, %v; want the next block after %+v", l2, err, l1)
		}
		// MaxHeld (2) is reached: a replay is still answered.
		if again, err := grant("ask-2", 10); err != nil || again.ID != l2.ID {
			t.Fatalf("a replay at the held limit = %+v, %v", again, err)
		}
		if _, err := grant("ask-3", 10); !tacerr.Is(err, tacerr.Conflict) {
			t.Fatalf("a third lease beyond max_held: %v", err)
		}
		ls, err := db.Leases(ctx, "s1")
		if err != nil || len(ls) != 2 || ls[0].Waiting || ls[1].Waiting {
			t.Fatalf("leases of s1 = %+v, %v; want 2, neither waiting", ls, err)
		}

		if _, err := db.ReturnLease(ctx, l2.ID, "test"); err != nil {
			t.Fatal(err)
		}
		refused := func(what, id string, err error) {
			t.Helper()
			if e, ok := tacerr.As(err); !ok || e.Code != tacerr.Conflict || e.Field != "request_id" || !strings.Contains(e.Message, id) {
				t.Fatalf("%s: %v, want conflict on request_id", what, err)
			}
		}
		_, err = grant("ask-2", 10)
		refused("the request of a returned lease", "ask-2", err)
		now = now.Add(2 * time.Hour)
		_, err = grant("ask-1", 10)
		refused("the request of an expired lease", "ask-1", err)
		for _, id := range []string{"has space", strings.Repeat("x", 65), "é"} {
			if _, err := grant(id, 10); !tacerr.Is(err, tacerr.InvalidInput) {
				t.Fatalf("request id %q: %v, want invalid_input", id, err)
			}
		}
		if ls, err := db.Leases(ctx, "s1"); err != nil || len(ls) != 2 {
			t.Fatalf("leases of s1 after the refusals = %d, %v; want 2", len(ls), err)
		}
		mustCheck(t, db)
	})
}

// TestLeaseAsk: a site keeps one request id per HQ pool until it records
// the lease that answers it (RecordHeldLease forgets it in the same
// transaction); DropLeaseAsk forgets it only while it is the one named.
func TestLeaseAsk(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 99)
		id, err := db.LeaseAsk(ctx, "HQ-A")
		if err != nil || !strings.HasPrefix(id, "lease-") {
			t.Fatalf("first ask = %q, %v", id, err)
		}
		if again, err := db.LeaseAsk(ctx, "HQ-A"); err != nil || again != id {
			t.Fatalf("asked again before a lease was recorded: %q, %v; want %q", again, err, id)
		}
		if other, err := db.LeaseAsk(ctx, "HQ-B"); err != nil || other == id {
			t.Fatalf("another pool's ask = %q, %v", other, err)
		}
		if err := db.RecordHeldLease(ctx, store.HeldLease{LeaseID: 7, HQPool: "HQ-A", HQSNRStart: 500, HQSNREnd: 999,
			GrantedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour),
			Pool: store.Pool{TAC: testTAC, SNRStart: 500, SNREnd: 509}}, "site:s1"); err != nil {
			t.Fatal(err)
		}
		next, err := db.LeaseAsk(ctx, "HQ-A")
		if err != nil || next == id {
			t.Fatalf("the ask after the lease was recorded = %q, %v; want a new id", next, err)
		}
		if err := db.DropLeaseAsk(ctx, "HQ-A", id); err != nil {
			t.Fatal(err)
		}
		if still, err := db.LeaseAsk(ctx, "HQ-A"); err != nil || still != next {
			t.Fatalf("dropping an older id forgot the current one: %q, %v; want %q", still, err, next)
		}
		if err := db.DropLeaseAsk(ctx, "HQ-A", next); err != nil {
			t.Fatal(err)
		}
		if fresh, err := db.LeaseAsk(ctx, "HQ-A"); err != nil || fresh == next {
			t.Fatalf("the ask after a drop = %q, %v; want a new id", fresh, err)
		}
	})
}

// TestGrantAskedLeaseClaimsOperatorGrant: a lease an operator granted waits
// for the site; the site's next request with an id claims it (no new
// SNRs), a replay of that id answers it again, the request after gets a
// new block; a request without an id (an older site) never claims one.
func TestGrantAskedLeaseClaimsOperatorGrant(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 99)
		enrollSite(t, db, "s1")
		op, err := db.GrantLease(ctx, "s1", "A", 30, time.Hour, store.LeaseLimits{}, "operator")
		if err != nil || !op.Waiting {
			t.Fatalf("operator's grant = %+v, %v; want it waiting", op, err)
		}
		ask := func(id string) store.Lease {
			t.Helper()
			l, err := db.GrantAskedLease(ctx, "s1", id, "A", 10, time.Hour, store.LeaseLimits{}, "site:s1")
			if err != nil {
				t.Fatal(err)
			}
			return l
		}
		if l := ask(""); l.ID == op.ID || l.Waiting {
			t.Fatalf("a request without an id = %+v; want a new block, not the waiting lease %d", l, op.ID)
		}
		if l := ask("ask-1"); l.ID != op.ID || l.Size() != 30 || l.Waiting {
			t.Fatalf("the site's request = %+v; want the operator's lease %d, claimed", l, op.ID)
		}
		if l := ask("ask-1"); l.ID != op.ID {
			t.Fatalf("the same request again = %+v; want lease %d", l, op.ID)
		}
		next := ask("ask-2")
		if next.ID == op.ID || next.Size() != 10 {
			t.Fatalf("the next request = %+v; want a new block of 10", next)
		}
		ls, err := db.Leases(ctx, "s1")
		if err != nil || len(ls) != 3 {
			t.Fatalf("leases of s1 = %+v, %v; want 3", ls, err)
		}
		for _, l := range ls {
			if l.Waiting {
				t.Fatalf("lease %d still waits after its site claimed it", l.ID)
			}
		}
		mustCheck(t, db)
	})
}
