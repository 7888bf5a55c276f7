package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tacline/tacline/internal/atomicfile"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// The published checkpoint is the newest checkpoint this log ever signed,
// kept in a file outside the ledger database (audit.published_checkpoint,
// next to the HSM token). Every signed checkpoint may have left the
// building (an audit export, a proof file, an auditor's copy), so each one
// counts as published. A ledger restored from a backup older than it lacks
// rows that devices already carry: provisioning from its older pool
// high-water marks would hand those IMEIs out a second time. The file lets
// a server see that before it provisions (CheckPublished).

// ReadPublished reads the signed checkpoint note in path; it returns
// (nil, nil) when the file does not exist.
func ReadPublished(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Unavailable, err, "read the published audit checkpoint %s", path)
	}
	return b, nil
}

// WritePublished replaces the file at path with the signed checkpoint note
// msg, durably (a temporary file, fsync, rename, fsync of the directory).
func WritePublished(path string, msg []byte) error {
	if err := atomicfile.Write(path, msg, 0o600); err != nil {
		return tacerr.Wrap(tacerr.Unavailable, err, "write the published audit checkpoint %s", path)
	}
	return nil
}

// publish records c in the published file unless the file already holds a
// checkpoint at least as large. Called after c is stored.
func (l *Log) publish(c StoredCheckpoint) error {
	path := l.cfg.PublishedCheckpoint
	if path == "" {
		return nil
	}
	old, err := ReadPublished(path)
	if err != nil {
		return err
	}
	if old != nil {
		if prev, err := OpenCheckpoint(old, l.signer.Verifier()); err == nil && prev.Size >= c.Size {
			return nil
		}
	}
	return WritePublished(path, c.Note)
}

// Standing says how a ledger's audit log stands against a checkpoint.
type Standing struct {
	Checkpoint Checkpoint
	HeadSize   int64
	HeadRoot   tlog.Hash
	// Older: the checkpoint covers events beyond the log's head; the
	// ledger was rolled back (restored from an older backup).
	Older bool
	// Forked: the log's tree at the checkpoint's size has another root;
	// the ledger is not the one the checkpoint was signed over.
	Forked bool
}

// OK reports whether the log extends the checkpoint.
func (s Standing) OK() bool { return !s.Older && !s.Forked }

func (s Standing) String() string {
	switch {
	case s.Older:
		return fmt.Sprintf("the ledger's audit log has %d events but checkpoint %d was already signed: the ledger is older than a published checkpoint (restored from an older backup?)", s.HeadSize, s.Checkpoint.Size)
	case s.Forked:
		return fmt.Sprintf("the ledger's audit log at size %d has another root than the signed checkpoint: it is not the ledger the checkpoint was signed over", s.Checkpoint.Size)
	}
	return fmt.Sprintf("the ledger's audit log (%d events) extends checkpoint %d", s.HeadSize, s.Checkpoint.Size)
}

// StandAgainst compares db's audit log with checkpoint c: it recomputes
// the head's root from the stored hashes (they must agree) and, when c is
// not beyond the head, the root of the tree of c's size.
func StandAgainst(ctx context.Context, db *store.DB, c Checkpoint) (Standing, error) {
	st := Standing{Checkpoint: c}
	size, root, err := Head(ctx, db)
	if err != nil {
		return st, err
	}
	st.HeadSize, st.HeadRoot = size, root
	r := dbHashReader{ctx, db}
	if size > 0 {
		th, err := tlog.TreeHash(size, r)
		if err != nil {
			return st, treeErr(err, size)
		}
		if th != root {
			return st, tacerr.New(tacerr.LedgerInvariant, "audit head root %s differs from the root %s of the stored hashes at size %d", root, th, size)
		}
	}
	switch {
	case c.Size > size:
		st.Older = true
	case c.Size == 0:
		st.Forked = c.Root != emptyRoot
	default:
		th, err := tlog.TreeHash(c.Size, r)
		if err != nil {
			return st, treeErr(err, c.Size)
		}
		st.Forked = th != c.Root
	}
	return st, nil
}

// treeErr keeps a database error's code (a read that failed is not a
// broken ledger); anything else from tlog is.
func treeErr(err error, size int64) error {
	if _, ok := tacerr.As(err); ok {
		return err
	}
	return tacerr.Wrap(tacerr.LedgerInvariant, err, "recompute the audit tree of size %d", size)
}

// CheckPublished verifies the published checkpoint file (if any) with v and
// compares the ledger with it. It returns a ledger_invariant error when
// the ledger is older than the published checkpoint or forked from it:
// `tacline serve` then refuses to start until an operator acknowledges
// (`tacline restore ack`).
func CheckPublished(ctx context.Context, db *store.DB, path string, v note.Verifier) (Standing, error) {
	msg, err := ReadPublished(path)
	if err != nil || msg == nil {
		return Standing{}, err
	}
	c, err := OpenCheckpoint(msg, v)
	if err != nil {
		return Standing{}, tacerr.Wrap(tacerr.LedgerInvariant, err, "published audit checkpoint %s", path)
	}
	st, err := StandAgainst(ctx, db, c)
	if err != nil {
		return st, err
	}
	if !st.OK() {
		return st, tacerr.New(tacerr.LedgerInvariant, "%s (%s). Provisioning from this ledger could give an IMEI to two devices: recover the missing ledger rows or read docs/operations.md, then run `tacline restore ack --reason TEXT`",
			st, path)
	}
	return st, nil
}

// SupersedePublished moves the published checkpoint file aside
// (PATH.superseded-<unix time>) so that a ledger acknowledged as rolled
// back can be served; the next checkpoint the server signs becomes the
// published one. It returns the new name.
func SupersedePublished(path string, now time.Time) (string, error) {
	aside := path + ".superseded-" + strconv.FormatInt(now.Unix(), 10)
	if err := os.Rename(path, aside); err != nil {
		return "", tacerr.Wrap(tacerr.Unavailable, err, "move the published audit checkpoint aside")
	}
	return aside, nil
}

// PublishLatest records the ledger's newest signed checkpoint in the
// published file if the file holds an older one or none (a server calls it
// at start-up, after CheckPublished, so that a ledger upgraded to this
// setting is covered before its next checkpoint).
func (l *Log) PublishLatest(ctx context.Context) error {
	if l.cfg.PublishedCheckpoint == "" || l.signer == nil {
		return nil
	}
	c, err := LatestCheckpoint(ctx, l.db)
	if tacerr.Is(err, tacerr.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return l.publish(c)
}
