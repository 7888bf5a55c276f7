package provisioner

import (
	"context"
	"crypto/x509"
	"sync/atomic"
	"time"

	"github.com/tacline/tacline/store"
)

// CountPossessionChecks counts the proofs of possession verified (CSR
// signatures checked) until restore is called. Not for parallel tests.
func CountPossessionChecks() (count func() int64, restore func()) {
	var n atomic.Int64
	prev := proofOfPossession
	proofOfPossession = func(r *x509.CertificateRequest) error {
		n.Add(1)
		return prev(r)
	}
	return n.Load, func() { proofOfPossession = prev }
}

// CountMetaLoads counts the ledger reads of a pool's metadata (loadMeta)
// until restore is called; each read first calls hold (if not nil) with the
// number of reads begun so far. Not for parallel tests.
func CountMetaLoads(hold func(begun int64)) (count func() int64, restore func()) {
	var n atomic.Int64
	prev := loadMeta
	loadMeta = func(ctx context.Context, db *store.DB, pool string, now func() time.Time) (cachedMeta, error) {
		k := n.Add(1)
		if hold != nil {
			hold(k)
		}
		return prev(ctx, db, pool, now)
	}
	return n.Load, func() { loadMeta = prev }
}

// Meta is meta, for tests.
func (s *Service) Meta(ctx context.Context, pool string) (tac uint32, err error) {
	m, err := s.meta(ctx, pool)
	return m.pool.TAC, err
}

// MetaWaiting counts the callers waiting for another caller's load of a
// pool's metadata.
func (s *Service) MetaWaiting(pool string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.loading[pool]; f != nil {
		return f.waiting
	}
	return 0
}

// SetRecoveryPage makes recovery read n pending intents or stale
// reservations at a time until restore is called. Not for parallel tests.
func SetRecoveryPage(n int) (restore func()) {
	prev := recoveryPage
	recoveryPage = n
	return func() { recoveryPage = prev }
}

// OnPossessionCheck runs hook before each proof of possession (a request
// past its ledger check, before it reserves anything) until restore is
// called. Not for parallel tests.
func OnPossessionCheck(hook func()) (restore func()) {
	prev := proofOfPossession
	proofOfPossession = func(r *x509.CertificateRequest) error {
		hook()
		return prev(r)
	}
	return func() { proofOfPossession = prev }
}
