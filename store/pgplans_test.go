package store_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// TestPostgresBatchPlansProbeKeys: the plans PostgreSQL caches for the
// group commit's lookups on a new, empty ledger (pgx keeps each statement
// prepared per connection, and PostgreSQL keeps a generic plan it found
// cheap until an ANALYZE) find each row with an index probe: no sequential
// scan of a table that grows with the ledger, and no scan of the recovery
// sweeps' partial indexes (every RESERVED IMEI or pending intent, and
// their dead entries until a VACUUM), whatever the ledger's size later.
func TestPostgresBatchPlansProbeKeys(t *testing.T) {
	ctx := context.Background()
	c := genericPlanConn(t)
	bad := regexp.MustCompile(`Seq Scan on (imeis|reservations|issuances)\b|imeis_reserved|issuances_pending`)
	n := 0
	for q, args := range store.PGBatchStatements {
		n++
		// PREPARE and EXPLAIN EXECUTE: the plan an execution of the
		// prepared statement uses (generic, forced above).
		if _, err := c.ExecContext(ctx, "DEALLOCATE ALL"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ExecContext(ctx, "PREPARE p AS "+c.Rebind(q)); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		lits := make([]string, len(args))
		for i, a := range args {
			switch a := a.(type) {
			case int64:
				lits[i] = fmt.Sprint(a)
			case []int64:
				lits[i] = fmt.Sprintf("'{%d}'", a[0])
			case []string:
				lits[i] = fmt.Sprintf("'{%s}'", a[0])
			default:
				t.Fatalf("argument %T", a)
			}
		}
		var plan []string
		if err := c.SelectContext(ctx, &plan, "EXPLAIN EXECUTE p("+strings.Join(lits, ", ")+")"); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		p := strings.Join(plan, "\n")
		if bad.MatchString(p) || !strings.Contains(p, "Index") {
			t.Errorf("plan of %s:\n%s", q, p)
		}
	}
	if n != 5 {
		t.Fatalf("%d statements checked", n)
	}
}

// TestPostgresBatchPlansOnce: a group-commit batch's statements run on
// the plan its connection made for each of them once (generic), never on a
// plan made again for one execution: PostgreSQL's own choice kept custom
// plans for the probes per array element (costed for a few elements they
// look cheaper than the generic plan), which planned them at every batch.
func TestPostgresBatchPlansOnce(t *testing.T) {
	db := storetest.Open(t, store.Postgres)
	seed(t, db, 0, 99)
	for i := 0; i < 3; i++ {
		n, err := db.CustomPlansAfterReserve([]store.ReserveRequest{provisionRequest(fmt.Sprintf("a%d", i)), provisionRequest(fmt.Sprintf("b%d", i))})
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatalf("batch %d: its connection made %d custom plans for the batch's statements, want 0", i, n)
		}
	}
	mustCheck(t, db)
}
