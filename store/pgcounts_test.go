package store_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/jmoiron/sqlx"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// TestPostgresCountPlans: the generic plans PostgreSQL caches on a new,
// empty ledger for the pool, lease, last-reservation and activity reads
// (pgx keeps each statement prepared per connection, PostgreSQL keeps a
// generic plan until an ANALYZE) read an index, never the whole imeis or
// reservations table, whatever the ledger's size later. An open id range
// (id >= ?) is planned as a sequential scan of reservations: it fails this.
func TestPostgresCountPlans(t *testing.T) {
	ctx := context.Background()
	c := genericPlanConn(t)
	bad := regexp.MustCompile(`Seq Scan on (imeis|reservations)\b`)
	for q, args := range store.PGCountStatements {
		if _, err := c.ExecContext(ctx, "PREPARE p AS "+c.Rebind(q)); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		call := "p"
		if len(args) > 0 {
			call = strings.Trim(fmt.Sprint(args), "[]")
			call = "p(" + strings.ReplaceAll(call, " ", ", ") + ")"
		}
		var plan []string
		if err := c.SelectContext(ctx, &plan, "EXPLAIN EXECUTE "+call); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if _, err := c.ExecContext(ctx, "DEALLOCATE p"); err != nil {
			t.Fatal(err)
		}
		if p := strings.Join(plan, "\n"); bad.MatchString(p) || !strings.Contains(p, "Index") {
			t.Errorf("plan of %s:\n%s", q, p)
		}
	}
}

// genericPlanConn returns a read connection to a new, empty PostgreSQL
// ledger on which every prepared statement is planned generically (the
// plan PostgreSQL keeps for a statement pgx prepared), closed when t ends.
func genericPlanConn(t *testing.T) *sqlx.Conn {
	t.Helper()
	db := storetest.Open(t, store.Postgres)
	ctx := context.Background()
	c, err := storetest.Reader(db).Connx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.ExecContext(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPostgresIdentityLeavesPlan: the generic plan of the read of the
// audit log's identity leaves (audit.CheckIdentities) reads the partial
// index audit_identity, not the log by its key: a few leaves whatever the
// log's size.
func TestPostgresIdentityLeavesPlan(t *testing.T) {
	ctx := context.Background()
	c := genericPlanConn(t)
	if _, err := c.ExecContext(ctx, "PREPARE p AS "+c.Rebind(store.IdentityLeavesQuery(store.Postgres))); err != nil {
		t.Fatal(err)
	}
	var plan []string
	if err := c.SelectContext(ctx, &plan, "EXPLAIN EXECUTE p(1000000)"); err != nil {
		t.Fatal(err)
	}
	if p := strings.Join(plan, "\n"); !strings.Contains(p, "audit_identity") {
		t.Errorf("plan of the identity leaves' read:\n%s", p)
	}
}
