package store_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tacline/tacline/register"
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

// batchStatements is how many statements TestPostgresBatchStatements's
// batch sends, BEGIN and COMMIT included: round trip 1, BEGIN, SET LOCAL
// plan_cache_mode and five reads (replays, devices provisioned, the pools
// locked, the reservation ids, the bindings' pools); round trip 2, eleven
// writes (UPDATE pools; INSERT reservations, imeis, issuances,
// device_claims, device_keys; UPDATE issuances; INSERT ... ON CONFLICT
// device_keys; INSERT certificates, devices; UPDATE imeis) and the audit
// append (one statement already); round trip 3, the outbox rows and
// COMMIT. Folding round trip 2's writes into one statement (data-modifying
// CTEs) cost the backend more CPU than it saved (docs/benchmarks.md,
// "Session 18").
const batchStatements = 21

// TestPostgresBatchStatements: the statements of a typical PostgreSQL
// group-commit batch, two reservations and two bindings with the audit log
// and the register outbox attached (as `tacline serve` runs it), counted
// and listed by round trip (go test -v). A statement added to or taken
// from the batch fails it.
func TestPostgresBatchStatements(t *testing.T) {
	cfg := store.Config{Driver: store.Postgres, DSN: storetest.PostgresDSN(t), MaxConns: 4}
	r := openAuditReplica(t, cfg, "s")
	db := r.db
	db.AddSink(register.Outbox{})
	seed(t, db, 0, 99)
	res, reqs := reserveBatch(t, db, "w", 2) // the audit log's first append locks its head: not typical
	var binds []*store.Binding
	for i, r := range res {
		binds = append(binds, bindingOf(r, reqs[i]))
	}
	var list []string
	db.TraceStatements(func(trip int64, q string) {
		list = append(list, fmt.Sprintf("%d: %s", trip, strings.Join(strings.Fields(q), " ")))
	})
	before, trips := db.Statements(), db.RoundTrips()
	got, errs := db.RunBatch([]store.ReserveRequest{provisionRequest("m0"), provisionRequest("m1")}, binds)
	db.TraceStatements(nil)
	if fmt.Sprint(errs) != "[<nil> <nil> <nil> <nil>]" || got[0] == nil || got[1] == nil {
		t.Fatalf("batch: %v", errs)
	}
	n, k := db.Statements()-before, db.RoundTrips()-trips
	for _, q := range list {
		t.Log(q)
	}
	if n != batchStatements || k != 3 {
		t.Fatalf("the batch sent %d statements in %d round trips, want %d in 3", n, k, batchStatements)
	}
	mustCheck(t, db)
}
