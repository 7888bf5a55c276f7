package register

import (
	"context"
	"fmt"
	"time"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// Retention: acknowledged outbox rows (the register has the event and gave a
// receipt) older than Config.Retention are deleted in batches by the
// delivery worker and by `tacline register prune`. Pending, sent and
// rejected rows are never deleted (they are undelivered events and clone
// alerts); the ledger (imeis, devices, certificates, audit log) is not
// touched. What the outbox's readers keep:
//
//   - delivery and per-IMEI ordering look at open rows only;
//   - the full DIRBS registration list and the DRS file read the ledger;
//   - a DIRBS delta reads the outbox rows after its base export's
//     high-water mark, so it is refused when rows after that mark were
//     pruned (Stats.PrunedThrough); whether an IMEI was listed at the base
//     export is read from the ledger, not from older outbox rows;
//   - reconciliation reads the ledger only.

// DefaultPruneBatch is the number of rows one prune transaction deletes
// unless Config.PruneBatch says otherwise.
const DefaultPruneBatch = 1000

// Stats are the outbox counters kept in register_outbox_stats.
type Stats struct {
	// Acknowledged is the number of acknowledged rows in the outbox.
	Acknowledged int64 `json:"acknowledged"`
	// Pruned is the number of acknowledged rows deleted by retention.
	Pruned int64 `json:"pruned"`
	// PrunedThrough is the largest outbox id deleted (0: none).
	PrunedThrough int64 `json:"pruned_through"`
}

// ReadStats reads the outbox counters.
func ReadStats(ctx context.Context, db *store.DB) (Stats, error) {
	s, err := db.OutboxStats(ctx)
	return Stats{Acknowledged: s.Acknowledged, Pruned: s.Pruned, PrunedThrough: s.PrunedThrough}, err
}

// PruneResult is what one Prune call deleted.
type PruneResult struct {
	// Before is the cutoff: acknowledged rows done before it were eligible.
	Before time.Time `json:"before"`
	// Deleted is the number of rows deleted, in Batches transactions.
	Deleted int64 `json:"deleted"`
	Batches int   `json:"batches"`
	// Stats are the counters after the last batch.
	Stats Stats `json:"stats"`
}

// Prune deletes acknowledged outbox rows acknowledged more than olderThan
// ago (by the store's clock), batch rows per transaction (0: DefaultPruneBatch),
// until none is left or maxBatches transactions ran (0: no limit). Rows in
// any other state are never deleted. Several pruners (replicas) may run at
// once: on PostgreSQL each skips the rows another is deleting.
func Prune(ctx context.Context, db *store.DB, olderThan time.Duration, batch, maxBatches int) (PruneResult, error) {
	r := PruneResult{}
	if olderThan <= 0 {
		return r, tacerr.Field(tacerr.InvalidInput, "older-than", "must be positive, e.g. 720h (30 days)")
	}
	if batch <= 0 {
		batch = DefaultPruneBatch
	}
	r.Before = db.Now().Add(-olderThan).Truncate(time.Microsecond)
	for maxBatches <= 0 || r.Batches < maxBatches {
		if err := ctx.Err(); err != nil {
			return r, tacerr.Wrap(tacerr.Unavailable, err, "prune register outbox")
		}
		n, err := db.PruneOutbox(ctx, r.Before, batch)
		if err != nil {
			return r, store.Translate(err, fmt.Sprintf("prune register outbox (%d rows deleted before the failure)", r.Deleted))
		}
		if n == 0 {
			break
		}
		r.Deleted += n
		r.Batches++
		if n < int64(batch) {
			break
		}
	}
	s, err := ReadStats(ctx, db)
	if err != nil {
		return r, err
	}
	r.Stats = s
	return r, nil
}

// CheckCounters compares the kept acknowledged count with a count of the
// rows (a scan of the acknowledged rows: for checks, not for status), both
// read by one statement (one snapshot). It returns the counters, the
// counted rows and, when they differ, a LedgerInvariant error.
func CheckCounters(ctx context.Context, db *store.DB) (Stats, int64, error) {
	s, err := ReadStats(ctx, db)
	if err != nil {
		return s, 0, err
	}
	kept, counted, err := db.OutboxAckedCounted(ctx)
	if err != nil {
		return s, 0, err
	}
	s.Acknowledged = kept
	if kept != counted {
		return s, counted, tacerr.New(tacerr.LedgerInvariant,
			"register outbox: the acknowledged counter says %d, the table holds %d acknowledged rows", kept, counted)
	}
	return s, counted, nil
}
