package audit

import (
	"context"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// Head returns the committed size and root hash of the log.
func Head(ctx context.Context, db *store.DB) (int64, tlog.Hash, error) {
	h, err := db.AuditHead(ctx)
	return h.Size, h.Root, err
}

// emptyRoot is the root hash of the empty tree, SHA-256 of nothing.
var emptyRoot = tlog.Hash{0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55}

// ConsistencyProof returns the proof that the log's tree of size newSize
// extends its tree of size oldSize (RFC 6962 consistency, tlog.ProveTree),
// read from the stored hashes; a site ships it with its checkpoint so HQ
// can check the site's log only grew. oldSize zero needs no proof (nil).
// Errors: invalid_input when oldSize > newSize or newSize exceeds the
// committed head.
func ConsistencyProof(ctx context.Context, db *store.DB, oldSize, newSize int64) (tlog.TreeProof, error) {
	size, _, err := Head(ctx, db)
	if err != nil {
		return nil, err
	}
	switch {
	case oldSize < 0 || oldSize > newSize:
		return nil, tacerr.Field(tacerr.InvalidInput, "old_size", "%d is not between 0 and the new size %d", oldSize, newSize)
	case newSize > size:
		return nil, tacerr.Field(tacerr.InvalidInput, "new_size", "%d exceeds the audit log's size %d", newSize, size)
	case oldSize == 0 || oldSize == newSize:
		return nil, nil
	}
	p, err := tlog.ProveTree(newSize, oldSize, dbHashReader{ctx, db})
	if err != nil {
		return nil, tacerr.Wrap(tacerr.LedgerInvariant, err, "prove audit tree %d extends %d", newSize, oldSize)
	}
	return p, nil
}

// InclusionProofs returns the RFC 6962 inclusion proof (tlog.ProveRecord)
// of each leaf index in the log's tree of size size, read from the stored
// hashes; a site ships them with its sync batch so HQ can check each event
// is in the checkpoint it verified. Hashes that several proofs share (the
// upper levels of the tree) are read from the database once. Errors:
// invalid_input when size exceeds the committed head or an index is not
// below size.
func InclusionProofs(ctx context.Context, db *store.DB, size int64, indexes []int64) ([]tlog.RecordProof, error) {
	head, _, err := Head(ctx, db)
	if err != nil {
		return nil, err
	}
	if size > head {
		return nil, tacerr.Field(tacerr.InvalidInput, "size", "%d exceeds the audit log's size %d", size, head)
	}
	r := &cachingHashReader{r: dbHashReader{ctx, db}, known: map[int64]tlog.Hash{}}
	out := make([]tlog.RecordProof, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= size {
			return nil, tacerr.Field(tacerr.InvalidInput, "index", "leaf %d is not in the tree of size %d", x, size)
		}
		if out[i], err = tlog.ProveRecord(size, x, r); err != nil {
			return nil, treeErr(err, size)
		}
	}
	return out, nil
}

// cachingHashReader remembers the stored hashes it read.
type cachingHashReader struct {
	r     tlog.HashReader
	known map[int64]tlog.Hash
}

func (c *cachingHashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	var missing []int64
	for _, x := range indexes {
		if _, ok := c.known[x]; !ok {
			missing = append(missing, x)
		}
	}
	if len(missing) > 0 {
		got, err := c.r.ReadHashes(missing)
		if err != nil {
			return nil, err
		}
		for i, x := range missing {
			c.known[x] = got[i]
		}
	}
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		out[i] = c.known[x]
	}
	return out, nil
}
