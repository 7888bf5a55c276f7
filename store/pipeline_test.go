package store_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// outboxRow is a register outbox row of testTAC under key.
func outboxRow(key string) store.OutboxRow {
	return store.OutboxRow{Key: key, IMEI14: uint64(testTAC)*1000000 + 1, TAC: testTAC, Event: "registered",
		DeviceID: "d1", Model: "m", Brand: "b", OccurredAt: time.Unix(1700000000, 0)}
}

// outboxRows counts the committed outbox rows whose key starts with prefix.
func outboxRows(t *testing.T, db *store.DB, prefix string) int {
	t.Helper()
	var n int
	r := storetest.Reader(db)
	if err := r.GetContext(context.Background(), &n, r.Rebind(`SELECT count(*) FROM register_outbox WHERE idempotency_key LIKE ?`), prefix+"%"); err != nil {
		t.Fatal(err)
	}
	return n
}

// A write that fails is its transaction's error on both databases, named as
// the write names it, whether it ran at once (SQLite) or was queued and sent
// with the next statement that returns rows (PostgreSQL's pipeline), and
// nothing of the transaction is kept; queued writes that succeed commit.
func TestQueuedWriteFailure(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 99)
		count := func() int { return outboxRows(t, db, "pipe-") }
		reads := 0
		err := db.InTx(ctx, func(tx *store.Tx) error {
			if err := tx.AppendOutbox([]store.OutboxRow{outboxRow("pipe-1")}); err != nil {
				return err
			}
			if err := tx.AppendOutbox([]store.OutboxRow{outboxRow("pipe-2"), outboxRow("pipe-2")}); err != nil {
				return err // SQLite: the duplicate fails here
			}
			names, err := tx.TACNamesOf([]uint32{testTAC}) // PostgreSQL: here
			if _, found := names[testTAC]; err == nil && found {
				reads++
			}
			return err
		})
		if !tacerr.Is(err, tacerr.Conflict) || !strings.Contains(err.Error(), "register outbox: insert rows") {
			t.Fatalf("transaction with a duplicate outbox key: %v; want conflict naming the outbox insert", err)
		}
		if reads != 0 {
			t.Fatalf("the read after the failed write answered")
		}
		if n := count(); n != 0 {
			t.Fatalf("%d outbox rows kept from a failed transaction", n)
		}
		err = db.InTx(ctx, func(tx *store.Tx) error {
			if err := tx.AppendOutbox([]store.OutboxRow{outboxRow("pipe-3")}); err != nil {
				return err
			}
			return tx.AppendOutbox([]store.OutboxRow{outboxRow("pipe-4"), outboxRow("pipe-5")})
		})
		if err != nil {
			t.Fatal(err)
		}
		if n := count(); n != 3 {
			t.Fatalf("%d outbox rows committed, want 3", n)
		}
	})
}

// A transaction whose BEGIN and COMMIT travel with its statements
// (PostgreSQL) ends whatever happens: failing before any statement was
// sent, failing or panicking after some were, it keeps nothing and leaves
// no connection inside a transaction; the catalogue's names of several
// TACs come back from one read, unknown TACs left out.
func TestTransactionsEnd(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 99)
		const unknownTAC = 99999999
		count := func() int { return outboxRows(t, db, "end-") }
		early := tacerr.New(tacerr.Internal, "refused before any statement")
		late := tacerr.New(tacerr.Internal, "refused after statements")
		for i := 0; i < 20; i++ {
			if err := db.InTx(ctx, func(tx *store.Tx) error { return early }); err != early {
				t.Fatalf("transaction refused at once: %v", err)
			}
			err := db.InTx(ctx, func(tx *store.Tx) error {
				if err := tx.AppendOutbox([]store.OutboxRow{outboxRow(fmt.Sprintf("end-late-%d", i))}); err != nil {
					return err
				}
				if _, err := tx.TACNamesOf([]uint32{testTAC}); err != nil {
					return err
				}
				return late
			})
			if err != late {
				t.Fatalf("transaction refused after its statements: %v", err)
			}
			func() {
				defer func() {
					if r := recover(); r != "boom" {
						t.Fatalf("panic in a transaction: recovered %v", r)
					}
				}()
				_ = db.InTx(ctx, func(tx *store.Tx) error {
					if err := tx.AppendOutbox([]store.OutboxRow{outboxRow(fmt.Sprintf("end-panic-%d", i))}); err != nil {
						return err
					}
					if _, err := tx.TACNamesOf([]uint32{testTAC}); err != nil {
						return err
					}
					panic("boom")
				})
			}()
		}
		if n := count(); n != 0 {
			t.Fatalf("%d outbox rows kept from failed transactions", n)
		}
		if db.Dialect() == store.Postgres {
			var open int
			if err := storetest.Reader(db).GetContext(ctx, &open, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND state LIKE 'idle in transaction%'`); err != nil {
				t.Fatal(err)
			}
			if open != 0 {
				t.Fatalf("%d connections left inside a transaction", open)
			}
		}
		var names map[uint32]store.TACName
		err := db.InTx(ctx, func(tx *store.Tx) error {
			if err := tx.AppendOutbox([]store.OutboxRow{outboxRow("end-ok")}); err != nil {
				return err
			}
			var err error
			names, err = tx.TACNamesOf([]uint32{testTAC, unknownTAC})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if n := count(); n != 1 {
			t.Fatalf("%d outbox rows committed, want 1", n)
		}
		want := map[uint32]store.TACName{testTAC: {Brand: "Example Devices", Model: "EX-1"}}
		if !reflect.DeepEqual(names, want) {
			t.Fatalf("TAC names %v, want %v", names, want)
		}
	})
}

// A pipelined transaction whose connection is lost under it (here: its own
// backend terminated) fails unavailable and retryable when its batch with
// COMMIT cannot even be sent (it answered internal: "conn closed", found
// by test/TestOutage), as database/sql's BEGIN and COMMIT report a lost
// connection; the committer's next transaction gets another connection.
func TestPipelinedBatchOnLostConnection(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		if db.Dialect() != store.Postgres {
			t.Skip("SQLite runs in process: no connection to lose")
		}
		ctx := context.Background()
		seed(t, db, 0, 99)
		err := db.InTx(ctx, func(tx *store.Tx) error {
			if err := tx.AppendOutbox([]store.OutboxRow{outboxRow("lost-1")}); err != nil {
				return err
			}
			// The backend ends; the driver sees its connection closed.
			_, _ = storetest.Exec(tx, `SELECT pg_terminate_backend(pg_backend_pid())`)
			// Queued with COMMIT: a batch that cannot be sent.
			return tx.AppendOutbox([]store.OutboxRow{outboxRow("lost-2")})
		})
		requireUnavailable(t, "a batch on a lost connection", err)
		if _, err := reserve(db, "after-lost", "A", 2); err != nil {
			t.Fatalf("reserve after a lost connection: %v", err)
		}
	})
}

// A row count that only the client can check (an UPDATE whose WHERE
// matched fewer rows) fails the transaction before COMMIT reaches the
// server, even when it is the last write queued: COMMIT waits for its
// answer instead of going in its batch (on SQLite the write runs at once).
func TestClientCheckedWriteBeforeCommit(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		seed(t, db, 0, 99)
		err := db.InTx(context.Background(), func(tx *store.Tx) error {
			if err := tx.AppendOutbox([]store.OutboxRow{outboxRow("last-1")}); err != nil {
				return err
			}
			return tx.ExecRows(`UPDATE register_outbox SET attempts = attempts WHERE idempotency_key = ?`, []any{"no-such-key"}, 1)
		})
		if err == nil || !strings.Contains(err.Error(), "test update") {
			t.Fatalf("transaction whose last write changed 0 rows of 1: %v; want its row-count error", err)
		}
		if n := outboxRows(t, db, "last-"); n != 0 {
			t.Fatalf("%d outbox rows committed by a transaction that failed its last write's check", n)
		}
	})
}
