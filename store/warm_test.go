package store_test

import (
	"context"
	"slices"
	"testing"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// TestWarmKeysResolve: on a migrated ledger every index Warm is meant to
// read is found (a migration that rebuilds a table or renames an index
// would otherwise leave it cold without a word); on PostgreSQL Warm reads
// nothing.
func TestWarmKeysResolve(t *testing.T) {
	ctx := context.Background()
	db := storetest.Open(t, store.SQLite)
	rep, err := db.Warm(ctx, 1<<30, nil)
	if err != nil {
		t.Fatal(err)
	}
	var tables []string
	for _, tr := range rep.Trees {
		if tr.Pages < 1 || tr.Partial || tr.Index == "" {
			t.Errorf("%+v: want the whole index, at least its root", tr)
		}
		tables = append(tables, tr.Table)
	}
	if want := store.WarmTables(); !slices.Equal(tables, want) {
		t.Fatalf("warmed the indexes of %v, want %v", tables, want)
	}
	pg := storetest.Open(t, store.Postgres)
	if rep, err := pg.Warm(ctx, 1<<30, nil); err != nil || len(rep.Trees) != 0 || rep.Bytes != 0 {
		t.Fatalf("PostgreSQL: Warm = %+v, %v; want nothing read", rep, err)
	}
}

// TestWarmBudgetOfConfig: the configured MiB, none for -1 or on
// PostgreSQL, and some memory-sized default for 0.
func TestWarmBudgetOfConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  store.Config
		want int64
	}{
		{store.Config{Driver: store.SQLite, WarmMiB: 300}, 300 << 20},
		{store.Config{Driver: store.SQLite, WarmMiB: -1}, 0},
		{store.Config{Driver: store.Postgres, WarmMiB: 300}, 0},
	} {
		if got := tc.cfg.WarmBudget(); got != tc.want {
			t.Errorf("%+v: WarmBudget() = %d, want %d", tc.cfg, got, tc.want)
		}
	}
	if got := (store.Config{Driver: store.SQLite}).WarmBudget(); got < 256<<20 {
		t.Errorf("default WarmBudget() = %d, want a quarter of this machine's memory", got)
	}
}
