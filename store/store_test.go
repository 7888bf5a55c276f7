package store_test

import (
	"context"
	"database/sql"
	"os"
	"testing"
	"time"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

func TestOpenMigratesBothDialects(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			db := storetest.Open(t, d)
			if err := db.Ping(context.Background()); err != nil {
				t.Fatal(err)
			}
			// Migrating again is a no-op.
			if err := db.Migrate(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestConfigValidateNamesField(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   store.Config
		field string
	}{
		{"no driver", store.Config{DSN: "x"}, "database.driver"},
		{"bad driver", store.Config{Driver: "mysql", DSN: "x"}, "database.driver"},
		{"no dsn", store.Config{Driver: store.SQLite}, "database.dsn"},
		{"negative conns", store.Config{Driver: store.Postgres, DSN: "x", MaxConns: -1}, "database.max_conns"},
		{"warm below -1", store.Config{Driver: store.SQLite, DSN: "x", WarmMiB: -2}, "database.warm_mib"},
		{"warm map below -1", store.Config{Driver: store.SQLite, DSN: "x", WarmMapMiB: -2}, "database.warm_map_mib"},
		{"warm refresh too short", store.Config{Driver: store.SQLite, DSN: "x", WarmRefresh: time.Millisecond}, "database.warm_refresh"},
		{"warm refresh negative", store.Config{Driver: store.SQLite, DSN: "x", WarmRefresh: -time.Minute}, "database.warm_refresh"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			e, ok := tacerr.As(err)
			if !ok || e.Field != tc.field || e.Code != tacerr.InvalidConfig {
				t.Fatalf("Validate() = %v, want invalid_config on %s", err, tc.field)
			}
		})
	}
}

func TestReserveAfterCloseFailsCleanly(t *testing.T) {
	db, err := store.Open(context.Background(), storetest.Config(t, store.SQLite))
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = db.Reserve(context.Background(), store.ReserveRequest{RequestID: "r", Pool: "p", Caller: "c", Kind: store.KindBench, PerDevice: 1})
	if !tacerr.Is(err, tacerr.Unavailable) {
		t.Fatalf("Reserve after Close = %v, want unavailable", err)
	}
}

// TestSQLitePageSize: a new ledger is created with 1 KiB pages in WAL mode,
// its writer checkpointing by itself only past 256 MiB of WAL (the
// checkpointer's backstop); a ledger created with 4 KiB pages keeps them
// (the same 256 MiB).
func TestSQLitePageSize(t *testing.T) {
	ctx := context.Background()
	check := func(t *testing.T, db *store.DB, page int64) {
		t.Helper()
		var got int64
		var mode string
		if err := storetest.Reader(db).Get(&got, `PRAGMA page_size`); err != nil {
			t.Fatal(err)
		}
		if err := storetest.Reader(db).Get(&mode, `PRAGMA journal_mode`); err != nil {
			t.Fatal(err)
		}
		var ckpt int64
		if err := db.InTx(ctx, func(tx *store.Tx) error { return storetest.Get(tx, &ckpt, `PRAGMA wal_autocheckpoint`) }); err != nil {
			t.Fatal(err)
		}
		if got != page || mode != "wal" || ckpt*page != 256<<20 {
			t.Fatalf("page_size %d, journal_mode %s, wal_autocheckpoint %d; want %d, wal, %d", got, mode, ckpt, page, (256<<20)/page)
		}
	}
	t.Run("new", func(t *testing.T) {
		check(t, storetest.Open(t, store.SQLite), 1024)
	})
	t.Run("existing", func(t *testing.T) {
		cfg := storetest.Config(t, store.SQLite)
		old, err := sql.Open("sqlite3", cfg.DSN)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := old.Exec(`PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; CREATE TABLE before_us (x INTEGER)`); err != nil {
			t.Fatal(err)
		}
		old.Close()
		db, err := store.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		check(t, db, 4096)
	})
}

// TestCheckpointOffTheWriter: the WAL is copied into the ledger's file by
// the checkpoint connection within seconds of a commit, far below the
// writer's own threshold (256 MiB), so no commit waits for a checkpoint.
// With the writer checkpointing by itself (every 40 MiB before), 2 MiB of
// committed rows stayed in the WAL and the file did not grow.
func TestCheckpointOffTheWriter(t *testing.T) {
	ctx := context.Background()
	cfg := storetest.Config(t, store.SQLite)
	db, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	path := store.SQLitePath(cfg.DSN)
	size := func() int64 {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	before := size()
	if err := db.InTx(ctx, func(tx *store.Tx) error {
		if _, err := storetest.Exec(tx, `CREATE TABLE filler (b BLOB)`); err != nil {
			return err
		}
		for i := 0; i < 512; i++ {
			if _, err := storetest.Exec(tx, `INSERT INTO filler VALUES (randomblob(4096))`); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := size(); got >= before+2<<20 {
		t.Fatalf("the ledger's file grew from %d to %d bytes at the commit: the writer checkpointed", before, got)
	}
	deadline := time.Now().Add(30 * time.Second)
	for size() < before+2<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("the ledger's file is %d bytes 30 s after a commit of 2 MiB (before: %d): nothing copied the WAL into it", size(), before)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
