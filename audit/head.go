package audit

import (
	"context"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/tacline/tacline/store"
)

// Head returns the committed size and root hash of the log.
func Head(ctx context.Context, db *store.DB) (int64, tlog.Hash, error) {
	var size int64
	var b []byte
	if err := db.Reader().QueryRowxContext(ctx, qHead).Scan(&size, &b); err != nil {
		return 0, tlog.Hash{}, store.Translate(err, "read the audit log head")
	}
	h, err := hashOf(b, "audit_head.root")
	return size, h, err
}

// emptyRoot is the root hash of the empty tree, SHA-256 of nothing.
var emptyRoot = tlog.Hash{0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55}
