package audit

import (
	"context"

	"github.com/tacline/tacline/store"
)

// Stats is the log's state for monitoring.
type Stats = store.AuditStats

// ReadStats reads the head and the newest checkpoint in one statement.
func ReadStats(ctx context.Context, db *store.DB) (Stats, error) { return db.AuditStats(ctx) }
