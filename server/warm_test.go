package server_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/server"
)

// waitWarm polls until ok holds for the registry's warm-up metrics or ctx
// ends (a failure: the refresh did not happen).
func waitWarm(ctx context.Context, t *testing.T, reg *prometheus.Registry, what string, ok func(runs, mapped float64) bool) (runs, mapped float64) {
	t.Helper()
	for {
		runs = metricValue(t, reg, "tacline_ledger_warm_runs_total")
		mapped = metricValue(t, reg, "tacline_ledger_warm_mapped_bytes")
		if ok(runs, mapped) {
			return runs, mapped
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: still %v walks, %v bytes mapped when the test's time ran out", what, runs, mapped)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// serveWarming serves a new SQLite ledger with one station that walks its
// key indexes every 100 ms while it keeps up to mapMiB of them mapped.
func serveWarming(ctx context.Context, t *testing.T, mapMiB int) (*devenv.Env, *server.Server, string) {
	t.Helper()
	env, err := devenv.Setup(ctx, devenv.Options{Dir: filepath.Join(t.TempDir(), "env"), Stations: 1})
	if err != nil {
		t.Fatal(err)
	}
	env.Config.Database.WarmMiB = 64
	env.Config.Database.WarmMapMiB = mapMiB
	env.Config.Database.WarmRefresh = 100 * time.Millisecond
	srv, url := serve(ctx, t, env)
	return env, srv, url
}

// TestWarmRefreshMapsWhatTheLedgerGrew: a server that keeps the key
// indexes' pages mapped walks them again every database.warm_refresh, and a
// walk after devices were provisioned keeps the pages the indexes grew into
// mapped too (more bytes mapped than before the devices).
func TestWarmRefreshMapsWhatTheLedgerGrew(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env, srv, url := serveWarming(ctx, t, 64)
	runs, before := waitWarm(ctx, t, srv.Registry, "the start-up walk and one refresh", func(r, m float64) bool { return r >= 2 && m > 0 })
	if _, err := devenv.ProvisionDevices(ctx, env, url, 300, filepath.Join(t.TempDir(), "keys")); err != nil {
		t.Fatal(err)
	}
	// The walk reads the database file, where the devices' index pages
	// arrive at a checkpoint (here long before the WAL reaches its
	// checkpoint size): one from a second connection, as SQLite allows.
	path, _, _ := strings.Cut(strings.TrimPrefix(env.Config.Database.DSN, "file:"), "?")
	c, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var busy, frames, moved int
	if err := c.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &moved); err != nil || frames == 0 || moved == 0 {
		t.Fatalf("checkpoint the ledger: %v (busy %d, %d frames, %d moved)", err, busy, frames, moved)
	}
	// Two more walks, so that one started after the checkpoint.
	_, after := waitWarm(ctx, t, srv.Registry, "a refresh after 300 devices", func(r, m float64) bool { return r >= runs+2 && m > before })
	t.Logf("mapped %v bytes before the devices, %v after", before, after)
}

// TestWarmRefreshOnlyWhileMapped: with database.warm_map_mib -1 the server
// walks the indexes once, at start-up, and never again (a refresh would
// read them for nothing: no pages are kept).
func TestWarmRefreshOnlyWhileMapped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env, srv, url := serveWarming(ctx, t, -1)
	waitWarm(ctx, t, srv.Registry, "the start-up walk", func(r, _ float64) bool { return r >= 1 })
	if metricValue(t, srv.Registry, "tacline_ledger_warm_done") != 1 {
		t.Fatal("tacline_ledger_warm_done is not 1 after the start-up walk")
	}
	// Devices, and ten refresh intervals at least: none may walk again.
	start := time.Now()
	if _, err := devenv.ProvisionDevices(ctx, env, url, 100, filepath.Join(t.TempDir(), "keys")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second - time.Since(start))
	if r, m := metricValue(t, srv.Registry, "tacline_ledger_warm_runs_total"), metricValue(t, srv.Registry, "tacline_ledger_warm_mapped_bytes"); r != 1 || m != 0 {
		t.Fatalf("without a map: %v walks and %v bytes mapped after the devices, want 1 and 0", r, m)
	}
}
