package site

import (
	"context"
	"fmt"
	"strings"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/store"
)

// Release reasons a site writes in lease.released.
const (
	ReleaseExpired   = "expired"
	ReleaseRequested = "requested by headquarters"
	ReleaseOperator  = "operator"
)

// ReleaseLeases releases, in the site's ledger (store.ReleaseHeldLease),
// every held lease that expired, that HQ asked back (read from HQ's status
// of this site; when HQ is unreachable only expired and already closed
// leases are released), or whose release waits for reservations in
// flight. The lease.released events ship with the next sync. It returns
// the releases it completed.
func (s *Site) ReleaseLeases(ctx context.Context) ([]store.HeldLeaseRelease, error) {
	st, err := s.hq.Status(ctx)
	return s.releaseLeases(ctx, st, err)
}

// releaseLeases is ReleaseLeases with HQ's status read (or hqErr: HQ
// unreachable).
func (s *Site) releaseLeases(ctx context.Context, st wire.SiteStatus, hqErr error) ([]store.HeldLeaseRelease, error) {
	held, err := s.db.HeldLeases(ctx)
	if err != nil {
		return nil, err
	}
	asked := map[int64]bool{}
	if hqErr == nil {
		for _, l := range st.Leases {
			if l.ReturnRequestedAt != nil && l.ReturnedAt == nil {
				asked[l.ID] = true
			}
		}
	}
	now := s.db.Now()
	var done []store.HeldLeaseRelease
	for _, h := range held {
		if !h.ReleasedAt.IsZero() {
			continue
		}
		var why string
		switch {
		case asked[h.LeaseID]:
			why = ReleaseRequested
		case !now.Before(h.ExpiresAt):
			why = ReleaseExpired
		case !h.ClosedAt.IsZero():
			why = "closed" // a release waiting for reservations in flight
		default:
			continue
		}
		r, err := s.db.ReleaseHeldLease(ctx, h.LeaseID, why, "site:"+s.cfg.Name)
		if err != nil {
			return done, err
		}
		s.lg.Info("lease release", "lease", h.LeaseID, "reason", why, "state", DescribeRelease(r))
		if r.Released {
			done = append(done, r)
		}
	}
	return done, hqErr
}

// DescribeRelease says in one line what a release did.
func DescribeRelease(r store.HeldLeaseRelease) string {
	var b strings.Builder
	fmt.Fprintf(&b, "lease %d ", r.LeaseID)
	switch {
	case r.Released && r.Unused > 0:
		fmt.Fprintf(&b, "released: %d SNRs from %06d never reserved go back to headquarters at the next sync", r.Unused, r.UnusedFrom)
	case r.Released:
		b.WriteString("released: every SNR was reserved; headquarters learns it at the next sync")
	default:
		fmt.Fprintf(&b, "closed for allocation; %d reservations in flight: the release completes once they are bound or voided (the site retries every interval)", r.InFlight)
	}
	return b.String()
}
