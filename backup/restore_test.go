package backup

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/config"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// emptySet makes a migrated ledger of dialect d, backs it up and returns
// the backup set's directory.
func emptySet(t *testing.T, d store.Dialect) string {
	t.Helper()
	ctx := context.Background()
	cfg, _ := ledgerAndPublished(t, d)
	set := filepath.Join(t.TempDir(), "set")
	if _, err := Create(ctx, &config.File{Database: cfg}, set, "test", nil); err != nil {
		t.Fatal(err)
	}
	return set
}

// TestRestoreRefusesLeftoverWAL: a crashed SQLite ledger leaves its -wal
// (and -shm) beside it; an operator who moves the ledger aside, as the
// restore's refusal says, and restores leaves that WAL beside the restored
// file, and SQLite would replay the old ledger's frames into it on its
// first open (a WAL is not bound to its database file). The restore is
// refused, naming the file, and writes nothing.
func TestRestoreRefusesLeftoverWAL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	set := emptySet(t, store.SQLite)

	// The old ledger, crashed with frames in its WAL: a copy of its -wal
	// while it is open.
	old := storetest.Config(t, store.SQLite)
	db, err := store.Open(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	if err := storetest.SeedLedger(ctx, db, 35000001, "Old", "Old", []storetest.SeedIMEI{{SNR: 7, State: "BOUND", Device: "old"}}); err != nil {
		t.Fatal(err)
	}
	wal, err := os.ReadFile(old.DSN + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		t.Run(suffix, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "ledger.db")
			if err := os.WriteFile(target+suffix, wal, 0o600); err != nil {
				t.Fatal(err)
			}
			rep, err := Restore(ctx, &config.File{Database: store.Config{Driver: store.SQLite, DSN: target}}, RestoreOptions{From: set})
			if !tacerr.Is(err, tacerr.Conflict) || !strings.Contains(err.Error(), target+suffix) {
				if err == nil {
					db, oerr := store.Open(ctx, store.Config{Driver: store.SQLite, DSN: target})
					if oerr == nil {
						chk, cerr := db.Check(ctx)
						t.Logf("restored ledger opened: check %+v %v", chk, cerr)
						db.Close()
					} else {
						t.Logf("restored ledger does not open: %v", oerr)
					}
				}
				t.Fatalf("restore beside a leftover %s = %+v, %v; want conflict naming %s", suffix, rep, err, target+suffix)
			}
			if _, err := os.Stat(target); !os.IsNotExist(err) {
				t.Fatalf("a refused restore wrote %s (%v)", target, err)
			}
		})
	}
}

// TestRestoreDSNWithQuery: a SQLite database.dsn may carry a "file:"
// prefix and a "?query" (store.Open ignores them). Restore put the ledger
// where store.Open reads it only once proven: a restore refused by ledger
// check leaves nothing there, and a proven one is moved into place.
func TestRestoreDSNWithQuery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	good := emptySet(t, store.SQLite)
	// A ledger that fails ledger check: seeded rows below a pool's
	// high-water mark are missing.
	cfg := storetest.Config(t, store.SQLite)
	db, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := storetest.SeedLedger(ctx, db, 35000000, "Brand", "Model", []storetest.SeedIMEI{{SNR: 1, State: "RESERVED"}}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	bad := filepath.Join(t.TempDir(), "set")
	if _, err := Create(ctx, &config.File{Database: cfg}, bad, "test", nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, set string
		want      tacerr.Code // "": restored
	}{
		{"refused", bad, tacerr.LedgerInvariant},
		{"proven", good, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "ledger.db")
			_, err := Restore(ctx, &config.File{Database: store.Config{Driver: store.SQLite, DSN: "file:" + path + "?_busy_timeout=5000"}}, RestoreOptions{From: tc.set})
			ents, _ := os.ReadDir(dir)
			var left []string
			for _, e := range ents {
				left = append(left, e.Name())
			}
			if tc.want != "" {
				if !tacerr.Is(err, tc.want) || len(left) > 0 {
					t.Fatalf("restore of a ledger failing check = %v, left %v; want %s and nothing written", err, left, tc.want)
				}
				return
			}
			if err != nil || len(left) != 1 || left[0] != "ledger.db" {
				t.Fatalf("restore = %v, left %v; want the ledger at %s alone", err, left, path)
			}
		})
	}
}

// signedEvents attaches to db an audit log signing with a software key and
// returns a function that appends an event and signs a checkpoint of it.
func signedEvents(t *testing.T, db *store.DB) func() audit.StoredCheckpoint {
	t.Helper()
	ctx := context.Background()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.New(db, audit.Config{Origin: "tacline.test/audit", KeyLabel: "audit", CheckpointEvery: 1 << 30, CheckpointInterval: time.Hour}, key)
	if err != nil {
		t.Fatal(err)
	}
	l.Attach()
	return func() audit.StoredCheckpoint {
		t.Helper()
		if err := db.InTx(ctx, func(tx *store.Tx) error {
			tx.Emit(store.Event{Type: store.EventRollbackAcknowledged, Actor: "test", Reason: "an event"})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		cp, err := l.Checkpoint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return cp
	}
}

// TestRestoreRollbackNeedsPublishedFile: --allow-rollback restores a
// ledger older than a known checkpoint on the promise that the server
// then refuses to start until `restore ack` records why (the newest
// checkpoint written to audit.published_checkpoint). Without that file
// configured nothing holds the server back and no acknowledgement can be
// given: the rolled-back ledger was restored and served silently. Such a
// restore is refused before anything is written, naming the setting.
func TestRestoreRollbackNeedsPublishedFile(t *testing.T) {
	t.Parallel()
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		t.Parallel()
		ctx := context.Background()
		cfg := storetest.Config(t, d)
		db, err := store.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		event := signedEvents(t, db)
		event()
		set := filepath.Join(t.TempDir(), "set")
		if _, err := Create(ctx, &config.File{Database: cfg}, set, "test", nil); err != nil {
			t.Fatal(err)
		}
		event() // signed after the backup: the set is older
		newer, err := audit.LatestCheckpoint(ctx, db)
		if err != nil {
			t.Fatal(err)
		}

		target := storetest.Config(t, d)
		rep, err := Restore(ctx, &config.File{Database: target}, RestoreOptions{From: set, Checkpoints: [][]byte{newer.Note}, AllowRollback: true})
		if e, ok := tacerr.As(err); !ok || e.Code != tacerr.InvalidConfig || e.Field != "audit.published_checkpoint" {
			t.Fatalf("restore --allow-rollback without a published file = %+v, %v; want invalid_config on audit.published_checkpoint", rep, err)
		}
		tdb, err := store.Open(ctx, target)
		if err != nil {
			t.Fatal(err)
		}
		defer tdb.Close()
		if size, _, err := audit.Head(ctx, tdb); err != nil || size != 0 {
			t.Fatalf("the refused restore wrote a ledger: audit log of %d events (%v)", size, err)
		}
	})
}

// TestAcknowledgeLedgerWithoutCheckpoint: a ledger rolled back to before
// its log's first checkpoint (restored with --allow-rollback and the log
// key) has no checkpoint whose key could verify the published file, so
// `restore ack` could never be given and the server never started, short
// of deleting the published file by hand, unaudited. With the log key the
// acknowledgement is made; without it the refusal names --log-key.
func TestAcknowledgeLedgerWithoutCheckpoint(t *testing.T) {
	t.Parallel()
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		t.Parallel()
		ctx := context.Background()
		cp := signedEvents(t, storetest.Open(t, d))()
		published := filepath.Join(t.TempDir(), "published-checkpoint")
		if err := audit.WritePublished(published, cp.Note); err != nil {
			t.Fatal(err)
		}
		cfg := &config.File{Database: storetest.Config(t, d)}
		cfg.Audit.PublishedCheckpoint = published
		db, err := store.Open(ctx, cfg.Database) // the rolled-back ledger: no checkpoint
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := Acknowledge(ctx, db, cfg, "lost the first hour", "op", ""); !tacerr.Is(err, tacerr.InvalidInput) || !strings.Contains(err.Error(), "log-key") {
			t.Fatalf("ack without a log key of a ledger with no checkpoint = %v; want invalid_input naming log-key", err)
		}
		aside, err := Acknowledge(ctx, db, cfg, "lost the first hour", "op", cp.VerifierKey)
		if err != nil {
			t.Fatalf("ack with the log key: %v", err)
		}
		if _, err := os.Stat(published); !os.IsNotExist(err) {
			t.Fatalf("the published file is still there after the ack (%v)", err)
		}
		if _, err := os.Stat(aside); err != nil {
			t.Fatalf("the published file was not moved to %s: %v", aside, err)
		}
	})
}

// TestRestoreRefusesAlteredSchema: the manifest's hashes prove only that
// the files are those the manifest names, and anyone who can write the set
// can recompute them. A trigger added to the set's SQLite ledger (one that
// quietly puts every bound IMEI back to RESERVED) passed ledger check and
// the audit proof, and acted on every later write of the restored ledger;
// so did a guard trigger dropped or rewritten. Each is now refused before
// the restored file is opened for writing, naming the object, and nothing
// is left at the target.
func TestRestoreRefusesAlteredSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, c := range []struct{ name, sql, want string }{
		{"trigger added", `CREATE TRIGGER evil AFTER UPDATE ON imeis BEGIN UPDATE imeis SET state = 'RESERVED' WHERE rowid = NEW.rowid; END`, `trigger "evil" (on imeis) is not in tacline's schema`},
		{"guard dropped", `DROP TRIGGER imeis_never_deleted`, `trigger "imeis_never_deleted" of tacline's schema is missing`},
		{"guard rewritten", `DROP TRIGGER imeis_never_deleted; CREATE TRIGGER imeis_never_deleted BEFORE DELETE ON imeis WHEN 0 BEGIN SELECT 1; END`, `trigger "imeis_never_deleted" differs from tacline's`},
		{"view added", `CREATE VIEW v AS SELECT 1`, `view "v" (on v) is not in tacline's schema`},
	} {
		t.Run(c.name, func(t *testing.T) {
			set := emptySet(t, store.SQLite)
			doctorSet(t, set, c.sql)
			restoreRefused(t, ctx, set, c.sql, c.want)
		})
	}
}

// TestRestoreOlderSchema: a set made by an older tacline (its ledger at an
// earlier migration) has that migration's schema, which the check compares
// with a new ledger migrated to the same version: it is restored, and the
// restored ledger is migrated to this tacline's schema as it is opened.
func TestRestoreOlderSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	set := emptySet(t, store.SQLite)
	m, err := readManifestFile(set)
	if err != nil {
		t.Fatal(err)
	}
	// The set's ledger as an older tacline's: migrated down to 20.
	old, err := store.Open(ctx, store.Config{Driver: store.SQLite, DSN: filepath.Join(set, m.Ledger)})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.MigrateDownTo(ctx, 20); err != nil {
		t.Fatal(err)
	}
	old.Close()
	c, err := sql.Open("sqlite3", filepath.Join(set, m.Ledger))
	if err != nil {
		t.Fatal(err)
	}
	var version int64
	err = c.QueryRow(`SELECT MAX(version_id) FROM goose_db_version WHERE is_applied`).Scan(&version)
	c.Close()
	if err != nil || version != 20 {
		t.Fatalf("the set's ledger is at migration %d (%v), want 20", version, err)
	}
	if m.Files, err = hashFiles(set); err != nil {
		t.Fatal(err)
	}
	if err := writeManifest(set, m); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "ledger.db")
	if _, err := Restore(ctx, &config.File{Database: store.Config{Driver: store.SQLite, DSN: target}}, RestoreOptions{From: set}); err != nil {
		t.Fatalf("restore of a set at migration 20: %v", err)
	}
}

// TestRestoreRefusesDoctoredIdentities: the stations, role certificates
// and issuers tables are neither in ledger check nor in the audit log's
// proofs, so a role certificate with the admin role written into a backup
// set's ledger (and the manifest's hashes recomputed) was restored and
// honoured. The restore now compares those tables with the log's identity
// events (audit.CheckIdentities), refuses the set naming the certificate,
// and leaves nothing at the target.
func TestRestoreRefusesDoctoredIdentities(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	set := emptySet(t, store.SQLite)
	add := `INSERT INTO people (cert_serial, person, roles, enrolled_at) VALUES ('7e57', 'mallory', 'admin', 1)`
	doctorSet(t, set, add)
	restoreRefused(t, ctx, set, add, `role certificate 7e57 (person "mallory", roles admin) has no person.enrolled or person.disabled event`)
}

// doctorSet runs query on the ledger of the SQLite backup set in set and
// recomputes the manifest's hashes, as anyone who can write the set can.
func doctorSet(t *testing.T, set, query string) {
	t.Helper()
	m, err := readManifestFile(set)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", filepath.Join(set, m.Ledger))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(query); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if m.Files, err = hashFiles(set); err != nil {
		t.Fatal(err)
	}
	if err := writeManifest(set, m); err != nil {
		t.Fatal(err)
	}
}

// restoreRefused restores set (doctored with query) to a new SQLite file
// and wants ledger_invariant saying want, with nothing left at the target.
func restoreRefused(t *testing.T, ctx context.Context, set, query, want string) {
	t.Helper()
	target := filepath.Join(t.TempDir(), "ledger.db")
	rep, err := Restore(ctx, &config.File{Database: store.Config{Driver: store.SQLite, DSN: target}}, RestoreOptions{From: set})
	if !tacerr.Is(err, tacerr.LedgerInvariant) || !strings.Contains(err.Error(), want) {
		t.Fatalf("restore of a set whose ledger had %q = %+v, %v; want ledger_invariant saying %s", query, rep, err, want)
	}
	for _, p := range []string{target, target + ".restoring"} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("a refused restore left %s (%v)", p, err)
		}
	}
}
