package audit

import (
	"context"
	"testing"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// TestReadsDuringOutage: with the PostgreSQL database closed and its
// backends terminated, the audit log's reads fail as unavailable and
// retryable, the same code the store gives the same driver error (before,
// audit had its own translator that answered internal).
func TestReadsDuringOutage(t *testing.T) {
	t.Parallel()
	db, _ := openLog(t, store.Postgres)
	ctx := context.Background()
	if _, _, err := Head(ctx, db); err != nil {
		t.Fatal(err)
	}
	restore := storetest.Outage(t, db)
	_, _, err := Head(ctx, db)
	if e, ok := tacerr.As(err); !ok || e.Code != tacerr.Unavailable || !e.Retryable() {
		t.Fatalf("Head during the outage = %v (code %s), want unavailable, retryable", err, tacerr.CodeOf(err))
	}
	restore()
}
