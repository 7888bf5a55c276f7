package api

import (
	"net/http"
	"testing"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/provisioner/provtest"
	"github.com/tacline/tacline/store"
)

// TestReplayAnswers: the first success of a request id is 201 whatever
// failed before it (here an HSM outage after the intent was recorded); only
// a true replay of a success is 200, with the same body.
func TestReplayAnswers(t *testing.T) {
	var ds *provtest.FaultySigner
	env := provtest.New(t, store.SQLite, provtest.WithFaultySigner(&ds))
	rs := startRealEnv(t, env)
	s1 := rs.as(t, ca.Station{ID: "S1"})
	req := wire.ProvisionRequest{RequestID: "rp-1", DeviceSerial: "SN-RP1", Product: "EX-1", CSR: string(provtest.NewDevice(t).CSR)}
	ds.Down.Store(true)
	if r := rs.do(t, s1, "POST", wire.PathProvision, req); r.status != http.StatusServiceUnavailable || !r.problem.Retryable {
		t.Fatalf("during the outage: %d %s", r.status, r.body)
	}
	ds.Down.Store(false)
	first := rs.do(t, s1, "POST", wire.PathProvision, req)
	again := rs.do(t, s1, "POST", wire.PathProvision, req)
	if first.status != http.StatusCreated || again.status != http.StatusOK || string(first.body) != string(again.body) {
		t.Fatalf("after the outage: %d then %d, want 201 then 200 with the same body\n%s\n%s", first.status, again.status, first.body, again.body)
	}
}
