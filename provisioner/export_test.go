package provisioner

import (
	"crypto/x509"
	"sync/atomic"
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
