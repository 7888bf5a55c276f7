package audit

import (
	"context"
	"crypto/ecdsa"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// Every signed checkpoint is recorded in the published file, never
// replaced by a smaller one; a ledger behind it or forked from it is
// refused, one that extends it is accepted.
func TestPublishedCheckpoint(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	key := newKey(t)
	cfg := testConfig()
	cfg.PublishedCheckpoint = filepath.Join(t.TempDir(), "published-checkpoint")
	open := func() (*store.DB, *Log) {
		db := storetest.Open(t, store.SQLite)
		l, err := New(db, cfg, key)
		if err != nil {
			t.Fatal(err)
		}
		l.Attach()
		return db, l
	}
	published := func() int64 {
		msg, err := ReadPublished(cfg.PublishedCheckpoint)
		if err != nil || msg == nil {
			t.Fatalf("published file: %v (present: %v)", err, msg != nil)
		}
		c, err := OpenCheckpoint(msg, newVerifier(t, key))
		if err != nil {
			t.Fatal(err)
		}
		return c.Size
	}
	db, l := open()
	emit(t, db, "a", 0, 10, 3)
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if n := published(); n != 10 {
		t.Fatalf("published size %d, want 10", n)
	}
	emit(t, db, "a", 10, 2, 1)
	if st, err := CheckPublished(ctx, db, cfg.PublishedCheckpoint, l.Verifier()); err != nil || !st.OK() || st.HeadSize != 12 {
		t.Fatalf("the ledger that signed it: %+v, %v", st, err)
	}

	// An older copy of the same log: behind the published checkpoint.
	older, lo := open()
	emit(t, older, "a", 0, 6, 3)
	if _, err := lo.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if n := published(); n != 10 {
		t.Fatalf("a smaller checkpoint replaced the published one: size %d", n)
	}
	st, err := CheckPublished(ctx, older, cfg.PublishedCheckpoint, l.Verifier())
	if !tacerr.Is(err, tacerr.LedgerInvariant) || !st.Older || !strings.Contains(err.Error(), "restore ack") {
		t.Fatalf("older ledger: %+v, %v", st, err)
	}

	// Another history of the same size: forked.
	forked, _ := open()
	emit(t, forked, "b", 0, 12, 4)
	st, err = CheckPublished(ctx, forked, cfg.PublishedCheckpoint, l.Verifier())
	if !tacerr.Is(err, tacerr.LedgerInvariant) || !st.Forked {
		t.Fatalf("forked ledger: %+v, %v", st, err)
	}

	// A checkpoint signed by another key is refused outright.
	if _, err := CheckPublished(ctx, db, cfg.PublishedCheckpoint, newVerifier(t, newKey(t))); !tacerr.Is(err, tacerr.LedgerInvariant) {
		t.Fatalf("checkpoint under another key: %v", err)
	}
}

func newVerifier(t *testing.T, k *ecdsa.PrivateKey) *NoteVerifier {
	t.Helper()
	v, err := NewNoteVerifier(testOrigin, &k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
