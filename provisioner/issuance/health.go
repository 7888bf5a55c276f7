package issuance

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"sync"

	"github.com/tacline/tacline/tacerr"
)

// signerHealth remembers whether the issuer's HSM key failed its last
// signature. While it is down, Ready probes it (one probe signature at a
// time) instead of letting a request reserve IMEIs for a signature that
// would fail.
type signerHealth struct {
	mu   sync.Mutex // held during a probe: concurrent callers share its outcome
	down error      // the last failure; nil while the signer works
}

func (h *signerHealth) set(err error) {
	h.mu.Lock()
	h.down = err
	h.mu.Unlock()
}

// Ready reports whether the issuer's signer is expected to sign: nil unless
// its last signature failed, in which case a probe signature (a random
// digest, verified under the issuer key) decides. The error keeps the code
// of the failure (hsm_unavailable for a signer that failed without one), so
// a caller can refuse a request before it spends anything.
func (is *Issuer) Ready(ctx context.Context) error {
	h := &is.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down == nil {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return signFailed(h.down, "the issuing CA key failed its last signature")
	}
	var digest [64]byte
	if _, err := rand.Read(digest[:is.hash.Size()]); err != nil {
		return signFailed(err, "probe the issuing CA key")
	}
	sig, err := is.signer.Sign(rand.Reader, digest[:is.hash.Size()], is.hash)
	if err == nil && !ecdsa.VerifyASN1(is.pub, digest[:is.hash.Size()], sig) {
		err = errBadProbe
	}
	if err != nil {
		h.down = err
		return signFailed(err, "the issuing CA key failed its last signature and a probe signature")
	}
	h.down = nil
	return nil
}

// errBadProbe is a signature that does not verify under the issuer key.
var errBadProbe = tacerr.New(tacerr.HSMDeviceError, "the HSM returned a signature that does not verify under the issuer key")

// signFailed keeps an HSM failure's code (retryability and the answer's
// status follow it) and otherwise says hsm_unavailable: nothing was
// reserved, retry later.
func signFailed(err error, what string) error {
	code := tacerr.HSMUnavailable
	if e, ok := tacerr.As(err); ok {
		code = e.Code
	}
	return tacerr.Wrap(code, err, "%s; nothing was reserved: retry when the HSM is back", what)
}
