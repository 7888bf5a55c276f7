package audit

import (
	"context"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// Bulk computes the audit rows of events appended to a log in bulk, outside
// the sink (store's bulk loader of a benchmark ledger, `tacline bench
// provision --prefill`): the leaves, IMEI index rows, stored hashes and new
// head of each append, in one pass, holding only the tree's right edge in
// memory. The rows are what Log.Append would write for the same events in
// the same order. Nothing else may append to the log meanwhile: the
// loader's append fails if the head moved.
type Bulk struct {
	head  store.AuditHead
	known map[int64]tlog.Hash
}

// NewBulk starts from the committed head of db's audit log.
func NewBulk(ctx context.Context, db *store.DB) (*Bulk, error) {
	h, err := db.AuditHead(ctx)
	if err != nil {
		return nil, err
	}
	idx := edgeIndexes(h.Size)
	got, err := db.AuditHashes(ctx, idx)
	if err != nil {
		return nil, err
	}
	b := &Bulk{head: h, known: make(map[int64]tlog.Hash, 64)}
	for _, i := range idx {
		x, ok := got[i]
		if !ok {
			return nil, tacerr.New(tacerr.LedgerInvariant, "audit stored hash %d is missing", i)
		}
		b.known[i] = x
	}
	return b, nil
}

// Append returns the append of events to the tree as left by the previous
// Append (the rows to write, From the head it extends, To the new head).
func (b *Bulk) Append(events []store.Event) (*store.AuditAppend, error) {
	a := &store.AuditAppend{From: b.head}
	if err := buildAppend(a, events, memHashes(b.known), b.known); err != nil {
		return nil, err
	}
	keep := make(map[int64]tlog.Hash, 64)
	for _, i := range edgeIndexes(a.To.Size) {
		h, ok := b.known[i]
		if !ok {
			return nil, tacerr.New(tacerr.Internal, "audit bulk append: edge hash %d not computed", i)
		}
		keep[i] = h
	}
	b.head, b.known = a.To, keep
	return a, nil
}

// Head is the head after the last Append.
func (b *Bulk) Head() store.AuditHead { return b.head }

// memHashes reads stored hashes from memory only.
type memHashes map[int64]tlog.Hash

func (m memHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		h, ok := m[x]
		if !ok {
			return nil, tacerr.New(tacerr.Internal, "audit bulk append: stored hash %d not in memory", x)
		}
		out[i] = h
	}
	return out, nil
}
