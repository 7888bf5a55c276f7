package audit

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// StoredCheckpoint is a checkpoint as kept in the database, with the
// verifier key of the key that signed it.
type StoredCheckpoint struct {
	Checkpoint
	VerifierKey string
}

// LatestCheckpoint returns the newest signed checkpoint, or a not_found
// error when none was signed yet.
func LatestCheckpoint(ctx context.Context, db *store.DB) (StoredCheckpoint, error) {
	return openCheckpoint(db.LatestAuditCheckpoint(ctx, "no audit checkpoint was signed yet: run tacline audit checkpoint"))
}

// CheckpointAt returns the signed checkpoint of size n.
func CheckpointAt(ctx context.Context, db *store.DB, n int64) (StoredCheckpoint, error) {
	return openCheckpoint(db.AuditCheckpointAt(ctx, n,
		"no audit checkpoint of size "+itoa(n)+" was signed: choose the size of a signed checkpoint or run tacline audit checkpoint"))
}

// CheckpointInfo is a signed checkpoint's size, root and signing time, as
// a list shows it (LatestCheckpoint and CheckpointAt return the signed
// note, verified).
type CheckpointInfo struct {
	Size     int64
	Root     tlog.Hash
	SignedAt time.Time
}

// RecentCheckpoints lists the newest limit signed checkpoints, newest
// first.
func RecentCheckpoints(ctx context.Context, db *store.DB, limit int) ([]CheckpointInfo, error) {
	got, err := db.RecentAuditCheckpoints(ctx, limit)
	if err != nil {
		return nil, err
	}
	out := make([]CheckpointInfo, len(got))
	for i, c := range got {
		out[i] = CheckpointInfo{Size: c.Size, Root: c.Root, SignedAt: c.SignedAt}
	}
	return out, nil
}

// openCheckpoint checks a stored checkpoint's signature and that its note
// says what its row says.
func openCheckpoint(sc store.AuditCheckpoint, err error) (StoredCheckpoint, error) {
	c := StoredCheckpoint{Checkpoint: Checkpoint{Size: sc.Size, Root: sc.Root, Note: sc.Note}, VerifierKey: sc.VerifierKey}
	if err != nil {
		return c, err
	}
	v, err := ParseVerifierKey(c.VerifierKey)
	if err != nil {
		return c, tacerr.Wrap(tacerr.LedgerInvariant, err, "audit checkpoint %d has a bad verifier key", c.Size)
	}
	opened, err := OpenCheckpoint(c.Note, v)
	if err != nil {
		return c, tacerr.Wrap(tacerr.LedgerInvariant, err, "audit checkpoint %d in the database", c.Size)
	}
	if opened.Size != c.Size || opened.Root != c.Root {
		return c, tacerr.New(tacerr.LedgerInvariant, "audit checkpoint %d: the signed note says size %d root %s, the row says root %s", c.Size, opened.Size, opened.Root, c.Root)
	}
	c.Origin = opened.Origin
	return c, nil
}

// Checkpoint signs a checkpoint of the log's head, unless the newest signed
// checkpoint already covers it (then it returns that one). It holds the head
// row's lock from reading the head to storing the checkpoint, so replicas
// sign in order, and before signing it proves, over the stored hashes, that
// the head's tree extends the tree of the newest signed checkpoint; it
// refuses to sign (code ledger_invariant) if it does not.
func (l *Log) Checkpoint(ctx context.Context) (StoredCheckpoint, error) {
	if l.signer == nil {
		return StoredCheckpoint{}, tacerr.New(tacerr.InvalidConfig, "this audit log has no signing key (audit.key_label)")
	}
	var out StoredCheckpoint
	err := l.db.InTx(ctx, func(tx *store.Tx) error {
		h, err := tx.LockAuditHead()
		if err != nil {
			return err
		}
		size, root := h.Size, tlog.Hash(h.Root)
		if size == 0 {
			return tacerr.New(tacerr.InvalidState, "the audit log is empty: there is nothing to checkpoint yet")
		}
		r := txHashesReader{tx}
		th, err := tlog.TreeHash(size, r)
		if err != nil {
			return err
		}
		if th != root {
			return tacerr.New(tacerr.LedgerInvariant, "audit head root %s differs from the root %s of the stored hashes at size %d: refusing to sign", root, th, size)
		}
		prev, err := openCheckpoint(tx.LatestAuditCheckpoint(""))
		switch {
		case tacerr.Is(err, tacerr.NotFound):
		case err != nil:
			return err
		case prev.Size == size:
			out = prev
			return nil
		case prev.Size > size:
			return tacerr.New(tacerr.LedgerInvariant, "the newest audit checkpoint has size %d, beyond the head's %d: refusing to sign", prev.Size, size)
		default:
			p, err := tlog.ProveTree(size, prev.Size, r)
			if err != nil {
				return tacerr.Wrap(tacerr.LedgerInvariant, err, "prove audit tree %d extends checkpoint %d", size, prev.Size)
			}
			if err := tlog.CheckTree(p, size, root, prev.Size, prev.Root); err != nil {
				return tacerr.Wrap(tacerr.LedgerInvariant, err, "the audit tree of size %d is not consistent with signed checkpoint %d (the stored hashes changed): refusing to sign", size, prev.Size)
			}
		}
		c, err := signCheckpoint(Checkpoint{Origin: l.cfg.Origin, Size: size, Root: root}, l.signer)
		if err != nil {
			return tacerr.Wrap(tacerr.HSMUnavailable, err, "sign audit checkpoint %d", size)
		}
		sc := StoredCheckpoint{Checkpoint: c, VerifierKey: l.signer.Verifier().Key()}
		if err := tx.AddAuditCheckpoint(store.AuditCheckpoint{Size: sc.Size, Root: sc.Root, Note: sc.Note, VerifierKey: sc.VerifierKey}); err != nil {
			return err
		}
		out = sc
		return nil
	})
	if err != nil {
		return out, err
	}
	if err := l.publish(out); err != nil {
		return out, err
	}
	return out, nil
}

// Run signs checkpoints until ctx ends: after every CheckpointEvery
// appended events (as this replica sees them) and every CheckpointInterval
// when events were appended since the newest checkpoint. Failures are
// logged and retried at the next occasion.
func (l *Log) Run(ctx context.Context, log *slog.Logger) {
	t := time.NewTicker(l.cfg.interval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-l.kick:
		}
		c, err := l.Checkpoint(ctx)
		switch {
		case err == nil:
			log.Debug("audit checkpoint", "size", c.Size, "root", c.Root.String())
		case tacerr.Is(err, tacerr.InvalidState): // empty log
		case ctx.Err() != nil:
			return
		default:
			log.Error("audit checkpoint failed", "err", err)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
