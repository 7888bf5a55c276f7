package server

import (
	"context"
	"time"

	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/tacerr"
)

// checkRollback refuses to serve a ledger older than the newest audit
// checkpoint ever published (audit.published_checkpoint, a file outside
// the database): provisioning from its older pool high-water marks would
// give IMEIs already on devices to other devices. `tacline restore ack`
// acknowledges such a ledger.
func (s *Server) checkRollback(ctx context.Context) error {
	p := s.cfg.Audit.PublishedCheckpoint
	if s.cfg.Audit.Disabled || s.Audit.Verifier() == nil {
		return nil
	}
	if p == "" {
		s.log.Warn("audit.published_checkpoint is not set: a ledger restored from an old backup would not be detected")
		return nil
	}
	if _, err := audit.CheckPublished(ctx, s.DB, p, s.Audit.Verifier()); err != nil {
		return err
	}
	return s.Audit.PublishLatest(ctx)
}

// rollbackCheckInterval is how often a running server compares its ledger
// with the published checkpoint.
const rollbackCheckInterval = 10 * time.Second

// watchRollback repeats the start-up rollback check while serving: a
// ledger replaced underneath a running server (a PostgreSQL failover to a
// lagging replica, say) or another ledger publishing further under the
// same log key sends the error on found and ends the watch. Errors that
// are not ledger_invariant (an unreadable file, a busy database) are
// logged and retried.
func (s *Server) watchRollback(ctx context.Context, found chan<- error) {
	p := s.cfg.Audit.PublishedCheckpoint
	if p == "" || s.cfg.Audit.Disabled || s.Audit.Verifier() == nil {
		return
	}
	t := time.NewTicker(rollbackCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, err := audit.CheckPublished(ctx, s.DB, p, s.Audit.Verifier())
		switch {
		case err == nil || ctx.Err() != nil:
		case tacerr.Is(err, tacerr.LedgerInvariant):
			found <- err
			return
		default:
			s.log.Warn("rollback check failed; retrying", "err", err.Error())
		}
	}
}
