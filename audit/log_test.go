package audit

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"ok", func(*Config) {}, ""},
		{"no origin", func(c *Config) { c.Origin = "" }, "audit.origin"},
		{"origin with space", func(c *Config) { c.Origin = "a b" }, "audit.origin"},
		{"origin with plus", func(c *Config) { c.Origin = "a+b" }, "audit.origin"},
		{"negative every", func(c *Config) { c.CheckpointEvery = -1 }, "audit.checkpoint_every"},
		{"negative interval", func(c *Config) { c.CheckpointInterval = -time.Second }, "audit.checkpoint_interval"},
		{"no key", func(c *Config) { c.KeyLabel = " " }, "audit.key_label"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig()
			tc.edit(&c)
			err := c.Validate()
			checkErr(t, err, tc.field)
		})
	}
}

func TestAppend(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			db, _ := openLog(t, d)
			checkHead(t, db, 0)
			// batches of assorted sizes cross many subtree boundaries
			n := 0
			for _, b := range []int{1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 600, 1} {
				emit(t, db, "a", n, b, b)
				n += b
				checkHead(t, db, int64(n))
			}
		})
	}
}

func TestAppendRollbackLeavesNoTrace(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			db, a := openLog(t, d)
			// a second replica of the log on the same database
			b, err := New(db, testConfig(), nil)
			if err != nil {
				t.Fatal(err)
			}
			emit(t, db, "x", 0, 3, 3)
			// replica a appends in a transaction that then rolls back: its
			// cache now describes a tree that never committed
			boom := errors.New("boom")
			err = db.InTx(context.Background(), func(tx *store.Tx) error {
				if err := a.Append(tx, []store.Event{testEvent("lost", 3)}); err != nil {
					return err
				}
				return boom
			})
			if !errors.Is(err, boom) {
				t.Fatalf("got %v", err)
			}
			// replica b commits a different leaf at the same index
			if err := db.InTx(context.Background(), func(tx *store.Tx) error {
				return b.Append(tx, []store.Event{testEvent("b", 3)})
			}); err != nil {
				t.Fatal(err)
			}
			// replica a appends again: it must not use its stale cache
			g0, l0 := a.AppendStats()
			emit(t, db, "a", 4, 5, 1)
			checkHead(t, db, 9)
			g1, l1 := a.AppendStats()
			if d == store.Postgres {
				// the first append finds the guess stale and locks; the
				// second locks first (the head had moved from where a
				// left it) and finds it where a left it; the next three
				// guess right
				if l1-l0 != 2 || g1-g0 != 3 {
					t.Fatalf("guessed %d, locked %d; want 3 and 2", g1-g0, l1-l0)
				}
			} else if g1 != 0 {
				t.Fatalf("SQLite appends guessed %d times", g1)
			}
			var lost int
			if err := storetest.Reader(db).Get(&lost, `SELECT count(*) FROM audit_leaves WHERE data LIKE '%lost%'`); err != nil {
				t.Fatal(err)
			}
			if lost != 0 {
				t.Fatalf("%d rolled-back leaves in the log", lost)
			}
		})
	}
}

func TestAuditRowsAreAppendOnly(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			db, _ := openLog(t, d)
			emit(t, db, "a", 0, 4, 4)
			for _, q := range []string{
				`UPDATE audit_leaves SET data = data WHERE idx = 1`,
				`DELETE FROM audit_leaves WHERE idx = 3`,
				`UPDATE audit_hashes SET hash = hash WHERE idx = 0`,
				`DELETE FROM audit_hashes`,
			} {
				err := db.InTx(context.Background(), func(tx *store.Tx) error {
					_, err := storetest.Exec(tx, q)
					return err
				})
				if err == nil || !strings.Contains(err.Error(), "audit_append_only") {
					t.Errorf("%s: got %v, want the append-only trigger to refuse", q, err)
				}
			}
			checkHead(t, db, 4)
		})
	}
}

func TestDisabledLogRecordsNothing(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	cfg := testConfig()
	cfg.Disabled = true
	l, err := New(db, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Attach()
	emit(t, db, "a", 0, 5, 5)
	checkHead(t, db, 0)
}
