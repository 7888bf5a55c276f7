package test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/config"
	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/factory/sim"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// TestBackupRestore takes a backup while a server process provisions,
// restores it into a fresh machine layout (the HSM token and credentials
// carried over, no ledger), provisions again from the restored ledger and
// checks that no IMEI of the original ledger was handed out again. On
// SQLite it also restores a backup older than a checkpoint signed after
// it: refused; restored with --allow-rollback, the server refuses to start
// until `tacline restore ack`.
func TestBackupRestore(t *testing.T) {
	t.Parallel()
	for _, d := range []store.Dialect{store.SQLite, store.Postgres} {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			testBackupRestore(t, d)
		})
	}
}

func testBackupRestore(t *testing.T, d store.Dialect) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	root := t.TempDir()
	opts := devenv.Options{Dir: filepath.Join(root, "a"), Stations: 4, Driver: d}
	if d == store.Postgres {
		opts.DSN = storetest.PostgresDSN(t)
	}
	env, err := devenv.Setup(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	// A ledger that has served before has signed checkpoints.
	if r := tacline(t, time.Minute, "audit", "checkpoint", "--config", env.ConfigPath); r.code != 0 {
		t.Fatalf("first audit checkpoint: %+v", r)
	}
	proc, err := devenv.StartServer(ctx, taclineBin, env.ConfigPath, filepath.Join(env.Dir, "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Kill()
	creds, err := factory.LoadCreds(env.CredsDir, 0)
	if err != nil {
		t.Fatal(err)
	}

	// A running line: 4 stations at 40 devices/s for 5s; backup A in the
	// middle of it.
	loaded := make(chan error, 1)
	var sum sim.Summary
	go func() {
		var err error
		sum, err = sim.Load(ctx, sim.Config{ServerURL: proc.URL, ServerCAFile: creds.ServerCAFile, RootsFile: creds.RootsFile,
			Stations: creds.Stations, Duration: 5 * time.Second, Rate: 40, Pregenerate: 220})
		loaded <- err
	}()
	waitBound(t, ctx, env, 20)
	setA := filepath.Join(root, "backup-a")
	r := tacline(t, time.Minute, "backup", "--config", env.ConfigPath, "--to", setA)
	if r.code != 0 {
		t.Fatalf("backup during the line: %+v", r)
	}
	// A SQLite copy's progress on standard error (not a terminal: lines),
	// its last line at 100 %.
	if d == store.SQLite && (!strings.Contains(r.stderr, "backup: copying the ledger into "+filepath.Join(setA, "ledger.db")) || !strings.Contains(r.stderr, " pages (100.0%), ")) {
		t.Fatalf("backup's progress on standard error: %q", r.stderr)
	}
	if err := <-loaded; err != nil {
		t.Fatal(err)
	}
	if sum.Devices < 50 || sum.Failed != 0 {
		t.Fatalf("line: %+v", sum)
	}
	// A checkpoint signed after backup A covers devices A lacks; backup B
	// (server still up, line idle) covers them.
	if r := tacline(t, time.Minute, "audit", "checkpoint", "--config", env.ConfigPath); r.code != 0 {
		t.Fatalf("audit checkpoint: %+v", r)
	}
	setB := filepath.Join(root, "backup-b")
	if r := tacline(t, time.Minute, "backup", "--config", env.ConfigPath, "--to", setB); r.code != 0 {
		t.Fatalf("backup B: %+v", r)
	}
	if err := proc.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}

	// A damaged set is refused before anything is restored.
	bad := filepath.Join(root, "backup-bad")
	copyTree(t, setB, bad, nil)
	ledgerFile := "ledger.db"
	if d == store.Postgres {
		ledgerFile = "ledger.pgdump"
	}
	f, err := os.OpenFile(filepath.Join(bad, ledgerFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("x"))
	f.Close()
	l0 := freshLayout(t, env, filepath.Join(root, "bad-layout"), d)
	if r := tacline(t, time.Minute, "restore", "--config", l0, "--from", bad); r.code == 0 || !strings.Contains(r.stderr, "does not match the manifest") {
		t.Fatalf("restore of a damaged set: %+v", r)
	}

	// Restore B into a fresh layout and provision again.
	l2 := freshLayout(t, env, filepath.Join(root, "b"), d)
	if r := tacline(t, 2*time.Minute, "restore", "--config", l2, "--from", setB); r.code != 0 || !strings.Contains(r.stdout, "ledger check ok") {
		t.Fatalf("restore B: %+v", r)
	}
	proc2, err := devenv.StartServer(ctx, taclineBin, l2, filepath.Join(filepath.Dir(l2), "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer proc2.Kill()
	env2 := *env
	env2.Dir, env2.ConfigPath = filepath.Dir(l2), l2
	env2.CredsDir = filepath.Join(env2.Dir, "stations")
	env2.ExportsDir = filepath.Join(env2.Dir, "exports")
	again, err := devenv.ProvisionDevices(ctx, &env2, proc2.URL, 5, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := proc2.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if len(again) != 20 {
		t.Fatalf("provisioned %d devices after the restore, want 20", len(again))
	}
	// No IMEI given after the restore is in the original ledger.
	orig, err := store.Open(ctx, env.Config.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	dups := 0
	for _, dev := range again {
		for _, s := range dev.IMEIs {
			m, err := imei.Parse(s)
			if err != nil {
				t.Fatal(err)
			}
			if rec, err := orig.LookupIMEI(ctx, m); !tacerr.Is(err, tacerr.NotFound) {
				dups++
				t.Errorf("IMEI %s given after the restore to %s is in the original ledger (%+v, %v)", s, dev.Serial, rec, err)
			}
		}
	}
	// A ledger already in place is proven the same way (what an operator
	// runs after a PostgreSQL point-in-time recovery).
	if r := tacline(t, time.Minute, "restore", "verify", "--config", l2, "--log-key", "@"+filepath.Join(setB, "log.pub")); r.code != 0 || !strings.Contains(r.stdout, "extends checkpoint") {
		t.Fatalf("restore verify: %+v", r)
	}
	if r := tacline(t, time.Minute, "ledger", "check", "--config", l2); r.code != 0 {
		t.Fatalf("ledger check after provisioning on the restored ledger: %+v", r)
	}
	t.Logf("%s: %d devices on the line, backup during it, %d devices after the restore, %d duplicates", d, sum.Devices, len(again), dups)

	if d != store.SQLite {
		return
	}
	// Backup A is older than the checkpoint signed after it: refused.
	l3 := freshLayout(t, env, filepath.Join(root, "c"), d)
	r = tacline(t, time.Minute, "restore", "--config", l3, "--from", setA)
	if r.code == 0 || !strings.Contains(r.stderr, "older than a checkpoint already signed") {
		t.Fatalf("restore of the older backup: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(l3), "ledger.db")); !os.IsNotExist(err) {
		t.Fatalf("a refused restore left a ledger in place (%v)", err)
	}
	// Restored anyway, the server refuses until acknowledged.
	if r := tacline(t, time.Minute, "restore", "--config", l3, "--from", setA, "--allow-rollback"); r.code != 0 || !strings.Contains(r.stdout, "ROLLBACK") {
		t.Fatalf("restore --allow-rollback: %+v", r)
	}
	if r := tacline(t, time.Minute, "restore", "verify", "--config", l3, "--log-key", "@"+filepath.Join(setB, "log.pub")); r.code == 0 || !strings.Contains(r.stderr, "older than a checkpoint") {
		t.Fatalf("restore verify of the rolled-back ledger: %+v", r)
	}
	if _, err := devenv.StartServer(ctx, taclineBin, l3, filepath.Join(filepath.Dir(l3), "server.log")); err == nil {
		t.Fatal("the server started on a rolled-back ledger")
	}
	logb, _ := os.ReadFile(filepath.Join(filepath.Dir(l3), "server.log"))
	if !strings.Contains(string(logb), "older than a published checkpoint") {
		t.Fatalf("server log does not say why it refused:\n%s", logb)
	}
	if r := tacline(t, time.Minute, "restore", "ack", "--config", l3); r.code == 0 || !strings.Contains(r.stderr, "reason") {
		t.Fatalf("ack without a reason: %+v", r)
	}
	if r := tacline(t, time.Minute, "restore", "ack", "--config", l3, "--reason", "test: lost rows recovered"); r.code != 0 {
		t.Fatalf("restore ack: %+v", r)
	}
	proc3, err := devenv.StartServer(ctx, taclineBin, l3, filepath.Join(filepath.Dir(l3), "server.log"))
	if err != nil {
		t.Fatalf("server after the acknowledgement: %v", err)
	}
	proc3.Stop(30 * time.Second)
}

// waitBound waits until the ledger of env has at least n bound IMEIs.
func waitBound(t *testing.T, ctx context.Context, env *devenv.Env, n int64) {
	t.Helper()
	db, err := store.Open(ctx, env.Config.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for {
		ps, err := db.Pools(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var bound int64
		for _, p := range ps {
			bound += p.Bound
		}
		if bound >= n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("the line bound no IMEI in time")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// freshLayout copies env's directory without its ledger, as a new machine
// with the same HSM token and credentials, and returns its configuration
// file. On PostgreSQL the configuration names a new, empty database.
func freshLayout(t *testing.T, env *devenv.Env, dir string, d store.Dialect) string {
	t.Helper()
	copyTree(t, env.Dir, dir, func(rel string) bool {
		return strings.HasPrefix(rel, "ledger.db") || strings.HasSuffix(rel, ".log")
	})
	cfgPath := filepath.Join(dir, "tacline.yaml")
	if d == store.Postgres {
		b, err := os.ReadFile(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		s := strings.Replace(string(b), env.Config.Database.DSN, storetest.PostgresDSN(t), 1)
		if err := os.WriteFile(cfgPath, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := config.Load(cfgPath); err != nil {
		t.Fatal(err)
	}
	return cfgPath
}

func copyTree(t *testing.T, from, to string, skip func(rel string) bool) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if skip != nil && skip(rel) {
			return nil
		}
		if de.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestServerStopsWhenLedgerFallsBehind: a running server whose ledger falls
// behind the published checkpoint (here another copy of the ledger, under
// the same log key, publishes further) stops serving by itself.
func TestServerStopsWhenLedgerFallsBehind(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env, err := devenv.Setup(ctx, devenv.Options{Dir: filepath.Join(t.TempDir(), "a"), Stations: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r := tacline(t, time.Minute, "audit", "checkpoint", "--config", env.ConfigPath); r.code != 0 {
		t.Fatalf("audit checkpoint: %+v", r)
	}
	// A second ledger: a copy, with its own configuration in the same
	// directory (so the same token and the same published file).
	copyTree(t, filepath.Join(env.Dir, "ledger.db"), filepath.Join(env.Dir, "fork.db"), nil)
	cfgText, err := os.ReadFile(env.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	fork := filepath.Join(env.Dir, "fork.yaml")
	if err := os.WriteFile(fork, []byte(strings.Replace(string(cfgText), "dsn: ledger.db", "dsn: fork.db", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	proc, err := devenv.StartServer(ctx, taclineBin, env.ConfigPath, filepath.Join(env.Dir, "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Kill()
	if r := tacline(t, time.Minute, "tac", "add", "--config", fork, "--tac", "35999990", "--brand", "Fork", "--model", "F"); r.code != 0 {
		t.Fatalf("tac add on the copy: %+v", r)
	}
	if r := tacline(t, time.Minute, "audit", "checkpoint", "--config", fork); r.code != 0 {
		t.Fatalf("audit checkpoint on the copy: %+v", r)
	}
	done := make(chan error, 1)
	go func() { done <- proc.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the server exited with status 0")
		}
	case <-ctx.Done():
		t.Fatal("the server kept serving a ledger behind the published checkpoint")
	}
	logb, _ := os.ReadFile(filepath.Join(env.Dir, "server.log"))
	if !strings.Contains(string(logb), "went back behind the published audit checkpoint") {
		t.Fatalf("server log does not say why it stopped:\n%s", logb)
	}
}
