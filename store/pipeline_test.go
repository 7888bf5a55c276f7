package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// A write that fails is its transaction's error on both databases, named as
// the write names it, whether it ran at once (SQLite) or was queued and sent
// with the next statement that returns rows (PostgreSQL's pipeline), and
// nothing of the transaction is kept; queued writes that succeed commit.
func TestQueuedWriteFailure(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 99)
		row := func(key string) store.OutboxRow {
			return store.OutboxRow{Key: key, IMEI14: uint64(testTAC)*1000000 + 1, TAC: testTAC, Event: "registered",
				DeviceID: "d1", Model: "m", Brand: "b", OccurredAt: time.Unix(1700000000, 0)}
		}
		count := func() int {
			var n int
			if err := storetest.Reader(db).GetContext(ctx, &n, `SELECT count(*) FROM register_outbox WHERE idempotency_key LIKE 'pipe-%'`); err != nil {
				t.Fatal(err)
			}
			return n
		}
		reads := 0
		err := db.InTx(ctx, func(tx *store.Tx) error {
			if err := tx.AppendOutbox([]store.OutboxRow{row("pipe-1")}); err != nil {
				return err
			}
			if err := tx.AppendOutbox([]store.OutboxRow{row("pipe-2"), row("pipe-2")}); err != nil {
				return err // SQLite: the duplicate fails here
			}
			_, _, found, err := tx.TACNames(testTAC) // PostgreSQL: here
			if err == nil && found {
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
			if err := tx.AppendOutbox([]store.OutboxRow{row("pipe-3")}); err != nil {
				return err
			}
			return tx.AppendOutbox([]store.OutboxRow{row("pipe-4"), row("pipe-5")})
		})
		if err != nil {
			t.Fatal(err)
		}
		if n := count(); n != 3 {
			t.Fatalf("%d outbox rows committed, want 3", n)
		}
	})
}
