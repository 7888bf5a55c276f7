package audit

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	tdnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/hsm/hsmtest"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

func TestCheckpointSignedInSoftHSM(t *testing.T) {
	t.Parallel()
	tok := hsmtest.Open(t, hsmtest.NewToken(t))
	if _, err := tok.GenerateKey("audit-key", hsm.ECP256); err != nil {
		t.Fatal(err)
	}
	key, err := tok.Signer("audit-key")
	if err != nil {
		t.Fatal(err)
	}
	db := storetest.Open(t, store.SQLite)
	l, err := New(db, testConfig(), key)
	if err != nil {
		t.Fatal(err)
	}
	l.Attach()
	if _, err := l.Checkpoint(context.Background()); !tacerr.Is(err, tacerr.InvalidState) {
		t.Fatalf("checkpoint of the empty log: %v, want invalid_state", err)
	}
	emit(t, db, "a", 0, 10, 3)
	c1, err := l.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c1.Size != 10 {
		t.Fatalf("checkpoint size %d", c1.Size)
	}
	// the HSM's signature verifies with an independent implementation
	tv, err := tdnote.NewECDSAVerifier(c1.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(c1.Note, note.VerifierList(tv)); err != nil {
		t.Fatalf("transparency-dev rejects the HSM-signed checkpoint: %v", err)
	}
	// nothing new: the same checkpoint comes back, unsigned again
	again, err := l.Checkpoint(context.Background())
	if err != nil || string(again.Note) != string(c1.Note) {
		t.Fatalf("second checkpoint: %v, note changed: %v", err, string(again.Note) != string(c1.Note))
	}
	emit(t, db, "a", 10, 7, 7)
	c2, err := l.Checkpoint(context.Background())
	if err != nil || c2.Size != 17 {
		t.Fatalf("checkpoint 2: %+v %v", c2.Size, err)
	}
	latest, err := LatestCheckpoint(context.Background(), db)
	if err != nil || latest.Size != 17 {
		t.Fatalf("latest: %d %v", latest.Size, err)
	}
}

// TestCheckpointRefusesFork rewrites the log's history below a signed
// checkpoint (as an attacker with database access would) and checks that
// tacline refuses to sign the forked tree.
func TestCheckpointRefusesFork(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			db, l := openLog(t, d)
			emit(t, db, "a", 0, 4, 4)
			if _, err := l.Checkpoint(context.Background()); err != nil {
				t.Fatal(err)
			}
			rewrite := []string{
				`DROP TRIGGER audit_leaves_no_delete`, `DROP TRIGGER audit_hashes_no_delete`,
				`DELETE FROM audit_leaves`, `DELETE FROM audit_hashes`, `DELETE FROM audit_imeis`, `DELETE FROM audit_imeis_staged`,
				`UPDATE audit_head SET size = 0, root = (SELECT root FROM audit_head) WHERE id = 1`,
			}
			if d == store.Postgres {
				rewrite[0] = `DROP TRIGGER audit_leaves_append_only ON audit_leaves`
				rewrite[1] = `DROP TRIGGER audit_hashes_append_only ON audit_hashes`
			}
			err := db.InTx(context.Background(), func(tx *store.Tx) error {
				for _, q := range rewrite {
					if _, err := storetest.Exec(tx, q); err != nil {
						return err
					}
				}
				_, err := storetest.Exec(tx, `UPDATE audit_head SET root = ? WHERE id = 1`, emptyRoot[:])
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			// a fresh Log (no cache) writes a different history of 6 events
			l2, err := New(db, testConfig(), newKey(t))
			if err != nil {
				t.Fatal(err)
			}
			l2.signer = l.signer
			if err := db.InTx(context.Background(), func(tx *store.Tx) error {
				evs := make([]store.Event, 6)
				for i := range evs {
					evs[i] = testEvent("forged", i)
				}
				return l2.Append(tx, evs)
			}); err != nil {
				t.Fatal(err)
			}
			_, err = l2.Checkpoint(context.Background())
			if !tacerr.Is(err, tacerr.LedgerInvariant) || !strings.Contains(err.Error(), "not consistent with signed checkpoint 4") {
				t.Fatalf("got %v, want a refusal to sign a fork", err)
			}
			if latest, err := LatestCheckpoint(context.Background(), db); err != nil || latest.Size != 4 {
				t.Fatalf("latest checkpoint %d, %v; want the old one (4)", latest.Size, err)
			}
		})
	}
}

func TestRunCheckpointsEveryN(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	cfg := testConfig()
	cfg.CheckpointEvery = 5
	l, err := New(db, cfg, newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	l.Attach()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx, slog.New(slog.NewTextHandler(io.Discard, nil))); close(done) }()
	defer func() { cancel(); <-done }()
	emit(t, db, "a", 0, 6, 6) // crosses 5: a checkpoint of 6 follows
	waitCheckpoint(t, db, 6)
}

func TestRunCheckpointsEveryInterval(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, store.SQLite)
	cfg := testConfig()
	cfg.CheckpointInterval = 20 * time.Millisecond // CheckpointEvery stays huge
	l, err := New(db, cfg, newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	l.Attach()
	emit(t, db, "a", 0, 3, 3)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx, slog.New(slog.NewTextHandler(io.Discard, nil))); close(done) }()
	defer func() { cancel(); <-done }()
	waitCheckpoint(t, db, 3)
}

// waitCheckpoint waits (up to 30 s, not a timing assertion) for Run to sign
// a checkpoint, which must have size want.
func waitCheckpoint(t *testing.T, db *store.DB, want int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := LatestCheckpoint(context.Background(), db)
		if err == nil {
			if c.Size != want {
				t.Fatalf("checkpoint size %d, want %d", c.Size, want)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Run signed no checkpoint: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
