package audit

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/tacline/tacline/store"
)

const qStats = `SELECT h.size, COALESCE(c.size, 0), COALESCE(c.created_at, 0)
FROM audit_head h LEFT JOIN (SELECT size, created_at FROM audit_checkpoints ORDER BY size DESC LIMIT 1) c ON 1 = 1`

// Stats is the log's state for monitoring.
type Stats struct {
	HeadSize       int64     // events appended
	CheckpointSize int64     // size of the newest signed checkpoint (0: none)
	CheckpointAt   time.Time // when it was signed (zero: none)
}

// ReadStats reads the head and the newest checkpoint in one statement.
func ReadStats(ctx context.Context, db *store.DB) (Stats, error) {
	var s Stats
	var at int64
	err := db.Reader().QueryRowxContext(ctx, qStats).Scan(&s.HeadSize, &s.CheckpointSize, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return s, nil
	}
	if err != nil {
		return s, store.Translate(err, "read audit log statistics")
	}
	if at > 0 {
		s.CheckpointAt = time.UnixMicro(at).UTC()
	}
	return s, nil
}
