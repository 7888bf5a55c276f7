package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// The audit head row keeps the tree's right edge (migration 0019), and on
// PostgreSQL an append whose guessed head another replica moved gets the
// head, locked, and that edge from its guarded statement: the locked path
// costs no read and no round trip of its own.

var edgeTestConfig = audit.Config{Origin: "edge.example/log", KeyLabel: "k"}

// auditReplica is one tacline server's ledger and audit log on a shared
// PostgreSQL database.
type auditReplica struct {
	db  *store.DB
	log *audit.Log
	tag string
	n   int
	// fail, when set, fails the next change after its audit append (a
	// sink attached after the log), which rolls the append back.
	fail bool
}

type failAfterAudit struct{ r *auditReplica }

func (f failAfterAudit) Append(*store.Tx, []store.Event) error {
	if f.r.fail {
		f.r.fail = false
		return errors.New("fails after the audit append")
	}
	return nil
}

func openAuditReplica(t testing.TB, cfg store.Config, tag string) *auditReplica {
	t.Helper()
	db, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	l, err := audit.New(db, edgeTestConfig, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &auditReplica{db: db, log: l, tag: tag}
	l.Attach()
	db.AddSink(failAfterAudit{r})
	return r
}

// appendEvents appends k events in one ledger transaction.
func (r *auditReplica) appendEvents(k int) error {
	return r.db.InTx(context.Background(), func(tx *store.Tx) error {
		for range k {
			r.n++
			tx.Emit(store.Event{Type: store.EventIMEIBound, Time: time.UnixMicro(1_790_000_000_000_000).UTC(),
				Actor: "station-" + r.tag, RequestID: fmt.Sprintf("req-%s-%d", r.tag, r.n), Pool: "p1", TAC: "35209900"})
		}
		return nil
	})
}

func (r *auditReplica) mustAppend(t *testing.T, k int) {
	t.Helper()
	if err := r.appendEvents(k); err != nil {
		t.Fatal(err)
	}
}

// checkAuditTree recomputes the tree from the stored leaves (in memory,
// with tlog) and checks that the head row's size, root and edge, and the
// stored hashes, are that tree's; it returns the head.
func checkAuditTree(t *testing.T, db *store.DB) store.AuditHead {
	t.Helper()
	ctx := context.Background()
	head, err := db.AuditHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mem := memTree{}
	var n int64
	err = db.AuditLeaves(ctx, 0, head.Size+1, func(idx int64, data []byte) error {
		if idx != n {
			return fmt.Errorf("leaf %d, want %d", idx, n)
		}
		hs, err := tlog.StoredHashes(n, data, mem)
		for i, h := range hs {
			mem[tlog.StoredHashIndex(0, n)+int64(i)] = h
		}
		n++
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != head.Size {
		t.Fatalf("%d leaves, head size %d", n, head.Size)
	}
	read := &recordingReader{r: mem}
	root, err := tlog.TreeHash(n, read)
	if err != nil {
		t.Fatal(err)
	}
	if root != head.Root {
		t.Fatalf("root of the leaves %s, head root %s", root, tlog.Hash(head.Root))
	}
	// the edge is what hashing the tree reads, in that order
	if len(head.Edge) != len(read.idx) {
		t.Fatalf("head edge of %d hashes, the tree of %d has %d", len(head.Edge), n, len(read.idx))
	}
	stored, err := db.AuditHashes(ctx, read.idx)
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range read.idx {
		if head.Edge[i] != mem[x] || stored[x] != mem[x] {
			t.Fatalf("edge hash %d (index %d): head row %x, stored %x, recomputed %x", i, x, head.Edge[i], stored[x], mem[x])
		}
	}
	return head
}

type memTree map[int64]tlog.Hash

func (m memTree) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		h, ok := m[x]
		if !ok {
			return nil, fmt.Errorf("hash %d not computed", x)
		}
		out[i] = h
	}
	return out, nil
}

type recordingReader struct {
	r   tlog.HashReader
	idx []int64
}

func (r *recordingReader) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	r.idx = append(r.idx, idx...)
	return r.r.ReadHashes(idx)
}

// checkExtends checks, with the log's consistency proof, that the head
// extends the earlier head old.
func checkExtends(t *testing.T, db *store.DB, old, head store.AuditHead) {
	t.Helper()
	p, err := audit.ConsistencyProof(context.Background(), db, old.Size, head.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckTree(p, head.Size, head.Root, old.Size, old.Root); err != nil {
		t.Fatalf("the tree of %d does not extend the tree of %d: %v", head.Size, old.Size, err)
	}
}

// TestPostgresAuditReplicasLockedAppend: two replicas append alternately,
// so that each one's guessed head is the other's old one: the guarded
// statement misses, answers the head it locked with the tree's edge, and
// the append to it goes with COMMIT. A missed guess's transaction takes
// the round trips of a guessed one (two: BEGIN and the guarded statement,
// then the append's rows and COMMIT; the locked head, the stored hashes
// and the append took three more before), and so does a replica's next
// append, which locks first (its head moved). Then both append
// concurrently; the tree verifies throughout and no append read a stored
// hash.
func TestPostgresAuditReplicasLockedAppend(t *testing.T) {
	cfg := store.Config{Driver: store.Postgres, DSN: storetest.PostgresDSN(t), MaxConns: 4}
	a, b := openAuditReplica(t, cfg, "a"), openAuditReplica(t, cfg, "b")

	a.mustAppend(t, 3) // no guess yet: locked
	a.mustAppend(t, 2) // guessed
	b.mustAppend(t, 1) // no guess yet: locked
	prev := checkAuditTree(t, a.db)
	for i := range 6 {
		r := []*auditReplica{a, b}[i%2]
		_, locked := r.log.AppendStats()
		before := r.db.RoundTrips()
		r.mustAppend(t, 1+i)
		if n := r.db.RoundTrips() - before; n != 2 {
			t.Fatalf("append %d (replica %s, head moved): %d round trips, want 2", i, r.tag, n)
		}
		if _, l := r.log.AppendStats(); l != locked+1 {
			t.Fatalf("append %d (replica %s): locked appends %d -> %d, want one more", i, r.tag, locked, l)
		}
		head := checkAuditTree(t, a.db)
		checkExtends(t, a.db, prev, head)
		prev = head
	}
	if g, l := a.log.AppendStats(); g != 1 || l != 4 {
		t.Fatalf("replica a: %d guessed, %d locked appends, want 1, 4", g, l)
	}
	// a replica that found the head moved locks first (no guess that would
	// likely miss) until it finds the head where it left it, then guesses
	for range 3 {
		a.mustAppend(t, 1)
	}
	if g, l := a.log.AppendStats(); g != 2 || l != 6 {
		t.Fatalf("replica a, three appends in a row: %d guessed, %d locked appends, want 2, 6", g, l)
	}
	prev = checkAuditTree(t, a.db)

	// concurrently: three goroutines per replica (each replica's DB is
	// shared by its goroutines, as a server's is by its requests)
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for _, r := range []*auditReplica{a, b} {
		for w := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 15 {
					err := r.db.InTx(context.Background(), func(tx *store.Tx) error {
						tx.Emit(store.Event{Type: store.EventIMEIBound, Time: time.UnixMicro(1_790_000_000_000_000).UTC(),
							Actor: "station", RequestID: fmt.Sprintf("req-%s-w%d-%d", r.tag, w, i), Pool: "p1", TAC: "35209900"})
						return nil
					})
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	head := checkAuditTree(t, a.db)
	checkExtends(t, a.db, prev, head)
	if want := prev.Size + 2*3*15; head.Size != want {
		t.Fatalf("head size %d, want %d", head.Size, want)
	}
	for _, r := range []*auditReplica{a, b} {
		if n := r.log.HashReads(); n != 0 {
			t.Fatalf("replica %s read stored hashes in %d appends, want none (the head row's edge)", r.tag, n)
		}
	}
	mustCheck(t, a.db)
}

// TestPostgresAuditEdgeProven: the head row's edge is used only when it
// hashes to the head's root. A rolled-back append leaves its replica's
// cache on a tree that was never committed: the next append misses and
// uses the committed head and edge. An edge that does not belong to the
// head (a tampered row; an older binary leaves a stale one, or NULL) is
// not used: the append reads the stored hashes, and the tree it makes is
// right.
func TestPostgresAuditEdgeProven(t *testing.T) {
	cfg := store.Config{Driver: store.Postgres, DSN: storetest.PostgresDSN(t), MaxConns: 4}
	a, b := openAuditReplica(t, cfg, "a"), openAuditReplica(t, cfg, "b")
	a.mustAppend(t, 5)
	a.mustAppend(t, 2)
	before := checkAuditTree(t, a.db)

	a.fail = true
	if err := a.appendEvents(3); err == nil {
		t.Fatal("the change whose sink failed committed")
	}
	if h := checkAuditTree(t, a.db); h.Size != before.Size || h.Root != before.Root {
		t.Fatalf("a rolled-back append moved the head from %d to %d", before.Size, h.Size)
	}
	_, locked := a.log.AppendStats()
	a.mustAppend(t, 1)
	if _, l := a.log.AppendStats(); l != locked+1 {
		t.Fatalf("after a rolled-back append: locked appends %d -> %d, want one more", locked, l)
	}
	prev := checkAuditTree(t, a.db)
	checkExtends(t, a.db, before, prev)

	// a's cache holds the head: b (whose cache is empty) gets the edge from
	// the head row only
	for i, edge := range [][]byte{make([]byte, 32*len(prev.Edge)), nil} {
		if err := a.db.InTx(context.Background(), func(tx *store.Tx) error {
			_, err := storetest.Exec(tx, `UPDATE audit_head SET edge = $1 WHERE id = 1`, edge)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		reads := b.log.HashReads()
		b.mustAppend(t, 2)
		if n := b.log.HashReads(); n != reads+1 {
			t.Fatalf("edge %d: stored hash reads %d -> %d, want one more", i, reads, n)
		}
		head := checkAuditTree(t, a.db) // the append wrote the right edge
		checkExtends(t, a.db, prev, head)
		prev = head
		a.mustAppend(t, 1)
		prev = checkAuditTree(t, a.db)
	}
	if n := a.log.HashReads(); n != 0 {
		t.Fatalf("replica a read stored hashes in %d appends, want none", n)
	}
}

// TestAuditHeadEdgeMigration: migration 0019 adds the head row's edge and
// goes down and up again; a log appended to before it fills the edge with
// its next append (reading the stored hashes once), and the tree verifies.
func TestAuditHeadEdgeMigration(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		ctx := context.Background()
		cfg := storetest.Config(t, d)
		r := openAuditReplica(t, cfg, "a")
		r.mustAppend(t, 5)
		checkAuditTree(t, r.db)
		if err := r.db.MigrateDownTo(ctx, 18); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := storetest.Reader(r.db).GetContext(ctx, &n, `SELECT count(edge) FROM audit_head`); err == nil {
			t.Fatal("schema 18: audit_head has an edge column")
		}
		if err := r.db.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		if h, err := r.db.AuditHead(ctx); err != nil || h.Edge != nil || h.Size != 5 {
			t.Fatalf("after migrating up: head %+v, %v; want size 5 and no edge", h, err)
		}
		r.db.Close()
		// a restarted server: no cache, no edge in the head row
		r = openAuditReplica(t, cfg, "b")
		r.mustAppend(t, 2)
		r.mustAppend(t, 3)
		if n := r.log.HashReads(); n != 1 {
			t.Fatalf("%d appends read stored hashes, want 1 (the first)", n)
		}
		if h := checkAuditTree(t, r.db); h.Size != 10 {
			t.Fatalf("head size %d, want 10", h.Size)
		}
		mustCheck(t, r.db)
	})
}
