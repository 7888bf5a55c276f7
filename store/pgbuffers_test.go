package store_test

import (
	"context"
	"testing"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// TestBufferFit: on PostgreSQL the server's shared buffers and the size of
// the device-key index are read (the index exists from migration on: its
// metapage at least); SQLite has no shared buffers to size.
func TestBufferFit(t *testing.T) {
	ctx := context.Background()
	pg := storetest.Open(t, store.Postgres)
	fit, ok, err := pg.BufferFit(ctx)
	if err != nil || !ok {
		t.Fatalf("PostgreSQL: BufferFit = %+v, %v, %v", fit, ok, err)
	}
	if fit.SharedBuffers < 128<<10 || fit.KeyIndex < 8192 {
		t.Fatalf("PostgreSQL: shared buffers %d bytes, key index %d bytes: want the server's setting (at least 128 kB) and at least the index's metapage", fit.SharedBuffers, fit.KeyIndex)
	}
	if fit.Short() {
		t.Fatalf("a new ledger's key index (%d bytes) is short of %d bytes of shared buffers", fit.KeyIndex, fit.SharedBuffers)
	}
	if _, ok, err := storetest.Open(t, store.SQLite).BufferFit(ctx); ok || err != nil {
		t.Fatalf("SQLite: ok %v, err %v; want nothing to size", ok, err)
	}
	// Short: more than half the shared buffers.
	for _, c := range []struct {
		buffers, index int64
		short          bool
	}{{128 << 20, 64 << 20, false}, {128 << 20, 64<<20 + 1, true}, {128 << 20, 733 << 20, true}, {2 << 30, 733 << 20, false}} {
		if got := (store.BufferFit{SharedBuffers: c.buffers, KeyIndex: c.index}).Short(); got != c.short {
			t.Errorf("buffers %d, key index %d: Short = %v, want %v", c.buffers, c.index, got, c.short)
		}
	}
}
