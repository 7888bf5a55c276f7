package audit

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

const testOrigin = "tacline.test/audit"

func testConfig() Config {
	return Config{Origin: testOrigin, KeyLabel: "audit-key", CheckpointEvery: 1 << 30, CheckpointInterval: time.Hour}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// openLog opens a fresh ledger of dialect d with an attached log signing
// with a software key.
func openLog(t testing.TB, d store.Dialect) (*store.DB, *Log) {
	t.Helper()
	db := storetest.Open(t, d)
	l, err := New(db, testConfig(), newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	l.Attach()
	return db, l
}

// testIMEI returns a valid 15-digit IMEI with serial number snr.
func testIMEI(snr int) string {
	m, err := imei.Parse(fmt.Sprintf("35209900%06d", snr))
	if err != nil {
		panic(err)
	}
	return m.String()
}

// testEvent returns a distinct event for i.
func testEvent(tag string, i int) store.Event {
	return store.Event{
		Type:      store.EventIMEIBound,
		Time:      time.UnixMicro(1_790_000_000_000_000 + int64(i)).UTC(),
		Actor:     "station-" + tag,
		RequestID: fmt.Sprintf("req-%s-%d", tag, i),
		Pool:      "p1",
		TAC:       "35209900",
		IMEIs:     []string{testIMEI(i % 1000000)},
		Attrs:     map[string]string{"i": fmt.Sprint(i)},
	}
}

// emit appends events in one ledger transaction per batch.
func emit(t testing.TB, db *store.DB, tag string, from, n, batch int) {
	t.Helper()
	if err := emitErr(db, tag, from, n, batch); err != nil {
		t.Fatal(err)
	}
}

// emitErr is emit for goroutines other than the test's.
func emitErr(db *store.DB, tag string, from, n, batch int) error {
	for i := from; i < from+n; i += batch {
		err := db.InTx(context.Background(), func(tx *store.Tx) error {
			for j := i; j < min(i+batch, from+n); j++ {
				tx.Emit(testEvent(tag, j))
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("emit events %d..: %w", i, err)
		}
	}
	return nil
}

// independentRoot recomputes the root from the stored leaves with
// transparency-dev/merkle (not tlog) and checks every leaf decodes.
func independentRoot(t testing.TB, db *store.DB) (int64, tlog.Hash) {
	t.Helper()
	rows, err := storetest.Reader(db).Queryx(`SELECT idx, data FROM audit_leaves ORDER BY idx`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	r := rf.NewEmptyRange(0)
	var n int64
	for rows.Next() {
		var idx int64
		var data []byte
		if err := rows.Scan(&idx, &data); err != nil {
			t.Fatal(err)
		}
		if idx != n {
			t.Fatalf("leaf index %d, want %d (gap or duplicate)", idx, n)
		}
		if _, err := DecodeEvent(data); err != nil {
			t.Fatalf("leaf %d: %v", idx, err)
		}
		if err := r.Append(rfc6962.DefaultHasher.HashLeaf(data), nil); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var h tlog.Hash
	if n == 0 {
		copy(h[:], rfc6962.DefaultHasher.EmptyRoot())
		return 0, h
	}
	root, err := r.GetRootHash(nil)
	if err != nil {
		t.Fatal(err)
	}
	copy(h[:], root)
	return n, h
}

// checkHead checks that the head row, the stored hashes and an independent
// recomputation from the leaves agree on the tree, and that it has want
// leaves.
func checkHead(t testing.TB, db *store.DB, want int64) {
	t.Helper()
	size, root, err := Head(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	n, ind := independentRoot(t, db)
	if size != want || n != want {
		t.Fatalf("head size %d, leaves %d, want %d", size, n, want)
	}
	if root != ind {
		t.Fatalf("head root %s, independent root %s", root, ind)
	}
	th, err := tlog.TreeHash(size, dbHashReader{context.Background(), db})
	if err != nil {
		t.Fatal(err)
	}
	if th != root {
		t.Fatalf("root from stored hashes %s, head root %s", th, root)
	}
}

// checkErr fails t unless err is nil (want empty) or an error whose text
// contains want.
func checkErr(t testing.TB, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Fatalf("got error %v, want one containing %q", err, want)
	}
}
