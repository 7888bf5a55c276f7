package store_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// TestPostgresCertificatesIndexes: on PostgreSQL the certificates table is
// indexed by its serial and its revocations only (migration 0017 dropped
// certificates_device, which nothing read), and the migration goes down
// and up again.
func TestPostgresCertificatesIndexes(t *testing.T) {
	db := storetest.Open(t, store.Postgres)
	ctx := context.Background()
	indexes := func() string {
		var names string
		if err := storetest.Reader(db).QueryRowContext(ctx, `SELECT COALESCE(string_agg(indexname, ',' ORDER BY indexname), '')
			FROM pg_indexes WHERE tablename = 'certificates'`).Scan(&names); err != nil {
			t.Fatal(err)
		}
		return names
	}
	if got := indexes(); got != "certificates_pkey,certificates_revoked" {
		t.Fatalf("indexes of certificates: %s", got)
	}
	if err := db.MigrateDownTo(ctx, 16); err != nil {
		t.Fatal(err)
	}
	if got := indexes(); !strings.Contains(got, "certificates_device") {
		t.Fatalf("schema 16: indexes of certificates: %s", got)
	}
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if got := indexes(); got != "certificates_pkey,certificates_revoked" {
		t.Fatalf("after migrating up again: %s", got)
	}
}
