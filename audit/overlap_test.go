package audit

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// The group committer lets the next batch start while the batch in flight
// sends its COMMIT (PostgreSQL). These tests hold a batch at its COMMIT (a
// deferred trigger that waits for an advisory lock the test holds), start
// the next batch meanwhile, and then let the first commit or fail.

const overlapGate = 42420

// overlapLedger is a PostgreSQL ledger with the log attached, one event
// appended (so the log knows its head), and a gate: a row inserted into
// overlap_gate makes its transaction's COMMIT wait for the advisory lock
// overlapGate, then fail if the row says so.
func overlapLedger(t *testing.T) (*store.DB, *Log) {
	t.Helper()
	db, l := openLog(t, store.Postgres)
	if err := db.InTx(context.Background(), func(tx *store.Tx) error {
		for _, q := range []string{
			`CREATE TABLE overlap_gate (fail boolean NOT NULL)`,
			`CREATE FUNCTION overlap_gate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_advisory_xact_lock(` + fmt.Sprint(overlapGate) + `);
	IF NEW.fail THEN RAISE EXCEPTION 'planted failure at commit'; END IF;
	RETURN NULL;
END $$`,
			`CREATE CONSTRAINT TRIGGER overlap_gate AFTER INSERT ON overlap_gate
	DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION overlap_gate()`,
		} {
			if _, err := storetest.Exec(tx, q); err != nil {
				return err
			}
		}
		tx.Emit(testEvent("setup", 0))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return db, l
}

// holdGate takes the advisory lock on a connection of its own; the
// returned function releases it.
func holdGate(t *testing.T, db *store.DB) func() {
	t.Helper()
	ctx := context.Background()
	c, err := storetest.Reader(db).Connx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, overlapGate); err != nil {
		t.Fatal(err)
	}
	released := false
	release := func() {
		if !released {
			released = true
			if _, err := c.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, overlapGate); err != nil {
				t.Error(err)
			}
			c.Close()
		}
	}
	t.Cleanup(release)
	return release
}

// waitLocks waits until some backend of the ledger's database waits for
// a lock of locktype (a row's transaction: transactionid; the gate:
// advisory), failing t after 20 s with what.
func waitLocks(t *testing.T, db *store.DB, locktype, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var n int
		err := storetest.Reader(db).Get(&n, `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE NOT l.granted AND l.locktype = $1 AND a.datname = current_database()`, locktype)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no backend waited for a %s lock within 20 s: %s", locktype, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// commitAsync runs one group-committed Commit that emits the events tag
// 0..n-1 (and inserts a gate row when gate is not nil), and returns its
// outcome on a channel.
func commitAsync(db *store.DB, tag string, n int, gate *bool) chan error {
	out := make(chan error, 1)
	go func() {
		out <- db.Commit(context.Background(), func(tx *store.Tx) error {
			for i := range n {
				tx.Emit(testEvent(tag, i))
			}
			if gate != nil {
				_, err := storetest.Exec(tx, `INSERT INTO overlap_gate (fail) VALUES ($1)`, *gate)
				return err
			}
			return nil
		})
	}()
	return out
}

// leavesOf counts the committed leaves whose event names tag.
func leavesOf(t *testing.T, db *store.DB, tag string) int {
	t.Helper()
	var n int
	if err := storetest.Reader(db).Get(&n, `SELECT count(*) FROM audit_leaves WHERE position($1::bytea in data) > 0`, []byte("req-"+tag+"-")); err != nil {
		t.Fatal(err)
	}
	return n
}

// startOverlap holds a batch (tag "first", one event, its gate row failing
// when fail) at its COMMIT and starts the next batch (tag "second", two
// events), waiting until that one is in flight: blocked on a row the first
// batch holds (the audit log's head), which it can only reach on a
// connection of its own while the first is still committing.
func startOverlap(t *testing.T, db *store.DB, fail bool) (first, second chan error, release func()) {
	t.Helper()
	release = holdGate(t, db)
	first = commitAsync(db, "first", 1, &fail)
	waitLocks(t, db, "advisory", "the first batch did not reach its COMMIT")
	second = commitAsync(db, "second", 2, nil)
	waitLocks(t, db, "transactionid", "the next batch did not start while the batch in flight was committing")
	select {
	case err := <-second:
		t.Fatalf("the second batch ended (%v) before the first committed", err)
	default:
	}
	return first, second, release
}

// TestOverlappedBatchChainsOnCommittedHead: the next batch's audit append,
// computed on the head of the batch still committing, waits for it and
// appends with the one guarded statement once it committed (no fallback to
// reading the head under a lock), and the tree is whole.
func TestOverlappedBatchChainsOnCommittedHead(t *testing.T) {
	t.Parallel()
	db, l := overlapLedger(t)
	guessed0, locked0 := l.AppendStats()
	first, second, release := startOverlap(t, db, false)
	release()
	if err := <-first; err != nil {
		t.Fatalf("first batch: %v", err)
	}
	if err := <-second; err != nil {
		t.Fatalf("second batch: %v", err)
	}
	guessed, locked := l.AppendStats()
	if guessed-guessed0 != 2 || locked != locked0 {
		t.Fatalf("appends: %d guessed, %d locked; want 2 guessed (the second chained on the first's head), 0 locked", guessed-guessed0, locked-locked0)
	}
	if db.OverlappedBatches() < 1 {
		t.Fatal("no batch let the next one start while it was committing")
	}
	checkHead(t, db, 4)
	if a, b := leavesOf(t, db, "first"), leavesOf(t, db, "second"); a != 1 || b != 2 {
		t.Fatalf("leaves: %d of the first batch, %d of the second; want 1 and 2", a, b)
	}
	verifyExport(t, db, l)
}

// TestOverlappedBatchAfterFailedCommit: the batch in flight fails at its
// COMMIT after its audit append, while the next batch, chained on that
// append's head, waits for it. The next batch must not commit on that
// head (which never became durable): it appends at the committed head
// instead, with no gap and no fork; the failed batch's member is rerun
// alone, fails again and is answered with the error; nothing of it is in
// the log.
func TestOverlappedBatchAfterFailedCommit(t *testing.T) {
	t.Parallel()
	db, l := overlapLedger(t)
	first, second, release := startOverlap(t, db, true)
	release()
	if err := <-first; err == nil || !bytes.Contains([]byte(err.Error()), []byte("planted failure")) {
		t.Fatalf("first batch: %v, want the planted failure", err)
	}
	if err := <-second; err != nil {
		t.Fatalf("second batch: %v", err)
	}
	checkHead(t, db, 3)
	if a, b := leavesOf(t, db, "first"), leavesOf(t, db, "second"); a != 0 || b != 2 {
		t.Fatalf("leaves: %d of the failed batch, %d of the second; want 0 and 2", a, b)
	}
	// the log appends on from the committed head
	emit(t, db, "after", 0, 2, 2)
	checkHead(t, db, 5)
	verifyExport(t, db, l)
}

// verifyExport signs a checkpoint and verifies the exported log offline.
func verifyExport(t *testing.T, db *store.DB, l *Log) {
	t.Helper()
	ctx := context.Background()
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := Export(ctx, db, &buf, ExportOptions{ToSize: cp.Size}); err != nil {
		t.Fatal(err)
	}
	if res := Verify(&buf, VerifyOptions{LogKey: l.Verifier().Key()}); !res.Valid {
		t.Fatalf("exported log does not verify: %s", res.Reason)
	}
}
