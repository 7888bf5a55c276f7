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
		return 0, tlog.Hash{}, wrapDB(err, "read the audit log head")
	}
	h, err := hashOf(b, "audit_head.root")
	return size, h, err
}
