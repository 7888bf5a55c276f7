package api

import (
	"crypto"
	"io"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/provisioner/provtest"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// downSigner fails every signature while armed (an HSM outage).
type downSigner struct {
	crypto.Signer
	armed atomic.Bool
}

func (d *downSigner) Sign(r io.Reader, digest []byte, o crypto.SignerOpts) ([]byte, error) {
	if d.armed.Load() {
		return nil, tacerr.New(tacerr.HSMUnavailable, "injected HSM outage")
	}
	return d.Signer.Sign(r, digest, o)
}

// TestReplayAnswers: the first success of a request id is 201 whatever
// failed before it (here an HSM outage after the intent was recorded); only
// a true replay of a success is 200, with the same body.
func TestReplayAnswers(t *testing.T) {
	var ds *downSigner
	env := provtest.New(t, store.SQLite, provtest.WithSigner(func(s crypto.Signer) crypto.Signer {
		ds = &downSigner{Signer: s}
		return ds
	}))
	rs := startRealEnv(t, env)
	s1 := rs.as(t, ca.Station{ID: "S1"})
	req := wire.ProvisionRequest{RequestID: "rp-1", DeviceSerial: "SN-RP1", Product: "EX-1", CSR: string(provtest.NewDevice(t).CSR)}
	ds.armed.Store(true)
	if r := rs.do(t, s1, "POST", wire.PathProvision, req); r.status != http.StatusServiceUnavailable || !r.problem.Retryable {
		t.Fatalf("during the outage: %d %s", r.status, r.body)
	}
	ds.armed.Store(false)
	first := rs.do(t, s1, "POST", wire.PathProvision, req)
	again := rs.do(t, s1, "POST", wire.PathProvision, req)
	if first.status != http.StatusCreated || again.status != http.StatusOK || string(first.body) != string(again.body) {
		t.Fatalf("after the outage: %d then %d, want 201 then 200 with the same body\n%s\n%s", first.status, again.status, first.body, again.body)
	}
}
