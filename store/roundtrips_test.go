package store_test

import (
	"fmt"
	"testing"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// TestPostgresBatchRoundTrips: a PostgreSQL group-commit batch that
// reserves and binds sends its reads, its reservations' ids and its
// bindings' pools with BEGIN, every write in a second round trip, and
// COMMIT in a third (the writes include UPDATEs whose row count only
// tacline checks, so COMMIT waits for their answer; with the audit log
// and the outbox attached, the audit append joins the writes and the
// outbox rows join COMMIT).
func TestPostgresBatchRoundTrips(t *testing.T) {
	db := storetest.Open(t, store.Postgres)
	seed(t, db, 0, 99)
	res, reqs := reserveBatch(t, db, "w", 2)
	var binds []*store.Binding
	for i, r := range res {
		binds = append(binds, bindingOf(r, reqs[i]))
	}
	before := db.RoundTrips()
	got, errs := db.RunBatch([]store.ReserveRequest{provisionRequest("m0"), provisionRequest("m1")}, binds)
	if fmt.Sprint(errs) != "[<nil> <nil> <nil> <nil>]" || got[0] == nil || got[1] == nil {
		t.Fatalf("batch: %v", errs)
	}
	if n := db.RoundTrips() - before; n != 3 {
		t.Fatalf("the batch took %d round trips, want 3", n)
	}
	mustCheck(t, db)
}
