package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

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
	rep, err := db.Warm(ctx, store.WarmBudget{Read: 1 << 30, Map: 1 << 30}, nil)
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
	if rep, err := pg.Warm(ctx, store.WarmBudget{Read: 1 << 30, Map: 1 << 30}, nil); err != nil || len(rep.Trees) != 0 || rep.Bytes != 0 {
		t.Fatalf("PostgreSQL: Warm = %+v, %v; want nothing read", rep, err)
	}
}

// TestWarmBudgetOfConfig: the configured MiB, none for -1 or on
// PostgreSQL, and memory-sized defaults for 0 (a quarter of the memory to
// read, an eighth to keep mapped).
func TestWarmBudgetOfConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  store.Config
		want store.WarmBudget
	}{
		{store.Config{Driver: store.SQLite, WarmMiB: 300, WarmMapMiB: 100}, store.WarmBudget{Read: 300 << 20, Map: 100 << 20}},
		{store.Config{Driver: store.SQLite, WarmMiB: 300, WarmMapMiB: -1}, store.WarmBudget{Read: 300 << 20}},
		{store.Config{Driver: store.SQLite, WarmMiB: -1, WarmMapMiB: 100}, store.WarmBudget{}},
		{store.Config{Driver: store.Postgres, WarmMiB: 300, WarmMapMiB: 100}, store.WarmBudget{}},
	} {
		if got := tc.cfg.WarmBudget(); got != tc.want {
			t.Errorf("%+v: WarmBudget() = %+v, want %+v", tc.cfg, got, tc.want)
		}
	}
	if d := (store.Config{}).WarmRefreshEvery(); d != 10*time.Minute {
		t.Errorf("default WarmRefreshEvery() = %s, want 10m", d)
	}
	if d := (store.Config{WarmRefresh: time.Second}).WarmRefreshEvery(); d != time.Second {
		t.Errorf("WarmRefreshEvery() with warm_refresh 1s = %s", d)
	}
	got := (store.Config{Driver: store.SQLite}).WarmBudget()
	if got.Read < 256<<20 || got.Map != got.Read/2 {
		t.Errorf("default WarmBudget() = %+v, want a quarter of this machine's memory to read and an eighth to map", got)
	}
}
