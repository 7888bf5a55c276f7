package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/provisioner/provtest"
	"github.com/tacline/tacline/site"
	"github.com/tacline/tacline/site/sitetest"
	"github.com/tacline/tacline/store"
)

// TestSitesAPI: a site acts for itself only, with its enrolled
// certificate; it is leased a block and syncs a signed checkpoint, which HQ
// cosigns; operators read its status, stations may not call the routes.
func TestSitesAPI(t *testing.T) {
	ctx := context.Background()
	env := provtest.New(t, store.SQLite)
	pki := newPKI(t)
	caFile := pki.write(t, "env-station-ca.pem", ca.ChainPEM(env.StationCA))
	_, wk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	witness, err := audit.NewCosigner("hq.example/audit", wk, nil)
	if err != nil {
		t.Fatal(err)
	}
	hq, err := site.NewHQ(env.DB, witness, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, pki, env.Service, func(c *Config) { c.ClientCA = []string{caFile} }, func(s *Server) { s.SetSites(hq) })
	rs := &realServer{testServer: ts, env: env}

	siteKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := audit.VerifierKey("s1.example/audit", &siteKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.StationCert(env.StationCA, env.StationKey, nil, ca.Station{Site: "s1"}, ca.ValidFor(time.Now(), time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	s1 := rs.client(&tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert})
	path := func(p, name string) string { return strings.Replace(p, "{site}", name, 1) }

	// Not enrolled yet.
	r := rs.do(t, s1, "POST", path(wire.PathSiteLeases, "s1"), wire.LeaseRequest{Pool: "F1-A", Size: 10})
	if r.status != http.StatusUnauthorized {
		t.Fatalf("unenrolled site: %d %s", r.status, r.body)
	}
	if err := env.DB.EnrollSite(ctx, store.Site{Name: "s1", Verifier: vkey, CertSerial: cert.SerialNumber.Text(16), Pools: []string{"F1-A"}}, "test"); err != nil {
		t.Fatal(err)
	}
	r = rs.do(t, s1, "POST", path(wire.PathSiteLeases, "s1"), wire.LeaseRequest{Pool: "F1-A", Size: 10})
	var l wire.Lease
	if err := json.Unmarshal(r.body, &l); r.status != http.StatusCreated || err != nil || l.Site != "s1" || l.Unused != 10 {
		t.Fatalf("lease: %d %s", r.status, r.body)
	}
	// Another site's routes, a station, a replaced certificate: refused.
	if r := rs.do(t, s1, "GET", path(wire.PathSiteStatus, "s2"), nil); r.status != http.StatusForbidden {
		t.Fatalf("other site: %d %s", r.status, r.body)
	}
	if r := rs.do(t, rs.as(t, ca.Station{ID: "S1"}), "GET", path(wire.PathSiteStatus, "s1"), nil); r.status != http.StatusForbidden {
		t.Fatalf("station: %d %s", r.status, r.body)
	}
	other, okey, err := ca.StationCert(env.StationCA, env.StationKey, nil, ca.Station{Site: "s1"}, ca.ValidFor(time.Now(), time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	replaced := rs.client(&tls.Certificate{Certificate: [][]byte{other.Raw}, PrivateKey: okey, Leaf: other})
	if r := rs.do(t, replaced, "GET", path(wire.PathSiteStatus, "s1"), nil); r.status != http.StatusUnauthorized {
		t.Fatalf("replaced site certificate: %d %s", r.status, r.body)
	}

	// A sync with a checkpoint signed by the site's key.
	signer, err := audit.NewNoteSigner("s1.example/audit", siteKey)
	if err != nil {
		t.Fatal(err)
	}
	m := imei.MustNew(provtest.TAC, mustSNR(t, l.SNRStart))
	out := imei.MustNew(provtest.TAC, mustSNR(t, l.SNREnd)+1)
	log := sitetest.NewMemLog(signer)
	log.Bound(t, m, "SN-1", "0a")
	cp := log.Checkpoint(t)
	r = rs.do(t, s1, "POST", path(wire.PathSiteSync, "s1"), wire.SiteSyncRequest{Checkpoint: cp, Events: []wire.SiteEvent{log.Event(t, 0, 1)}})
	var res wire.SiteSyncResponse
	if err := json.Unmarshal(r.body, &res); r.status != http.StatusOK || err != nil || res.Applied != 1 || res.VerifiedSize != 1 {
		t.Fatalf("sync: %d %s", r.status, r.body)
	}
	if c, err := audit.OpenCosigned([]byte(res.Cosigned), signer.Verifier(), witness.Verifier()); err != nil || c.Size != 1 {
		t.Fatalf("cosigned: %+v, %v", c, err)
	}
	// An IMEI outside the lease: refused with lease_violation.
	log.Bound(t, m, "SN-2", "0b")
	log.Bound(t, out, "SN-3", "0c")
	cp = log.Checkpoint(t)
	r = rs.do(t, s1, "POST", path(wire.PathSiteSync, "s1"), wire.SiteSyncRequest{Checkpoint: cp, ProofFrom: 1, Proof: log.Proof(t, 1),
		Events: []wire.SiteEvent{log.Event(t, 2, 3)}})
	if r.status != http.StatusConflict || r.problem.Code != "lease_violation" {
		t.Fatalf("IMEI outside the lease: %d %s", r.status, r.body)
	}
	op := rs.as(t, ca.Station{Roles: []string{"operator"}})
	r = rs.do(t, op, "GET", path(wire.PathSiteStatus, "s1"), nil)
	var st wire.SiteStatus
	if err := json.Unmarshal(r.body, &st); r.status != http.StatusOK || err != nil || st.Bound != 1 || st.Unused != 9 || st.Consistent || st.Refusals != 1 {
		t.Fatalf("status: %d %s", r.status, r.body)
	}
	// The site releases the lease: its first SNR never reserved is the
	// second; the nine from it go back to the pool.
	log.Add(t, store.Event{Type: store.EventLeaseReleased, Time: time.Now().UTC().Truncate(time.Microsecond), Actor: "site:s1",
		Attrs: map[string]string{"lease": fmt.Sprint(l.ID), "unused_from": fmt.Sprintf("%06d", mustSNR(t, l.SNRStart)+1)}})
	cp = log.Checkpoint(t)
	// A mark other than the one in the site's log is refused.
	forged := log.Event(t, 3, 4)
	forged.UnusedFrom = l.SNREnd
	r = rs.do(t, s1, "POST", path(wire.PathSiteSync, "s1"), wire.SiteSyncRequest{Checkpoint: cp, ProofFrom: 1, Proof: log.Proof(t, 1),
		Events: []wire.SiteEvent{forged}})
	if r.status != http.StatusConflict || r.problem.Code != "lease_violation" || r.problem.Field != "events[0].unused_from" {
		t.Fatalf("release with a forged mark: %d %s", r.status, r.body)
	}
	r = rs.do(t, s1, "POST", path(wire.PathSiteSync, "s1"), wire.SiteSyncRequest{Checkpoint: cp, ProofFrom: 1, Proof: log.Proof(t, 1),
		Events: []wire.SiteEvent{log.Event(t, 3, 4)}})
	if err := json.Unmarshal(r.body, &res); r.status != http.StatusOK || err != nil || res.Applied != 1 {
		t.Fatalf("release: %d %s", r.status, r.body)
	}
	r = rs.do(t, op, "GET", path(wire.PathSiteStatus, "s1"), nil)
	if err := json.Unmarshal(r.body, &st); r.status != http.StatusOK || err != nil || st.Released != 9 || st.Unused != 0 || !st.Consistent ||
		st.Leases[0].ReturnedAt == nil || st.Leases[0].Released != 9 {
		t.Fatalf("status after the release: %d %s", r.status, r.body)
	}
}

func mustSNR(t *testing.T, s string) uint32 {
	t.Helper()
	var v uint32
	for _, c := range s {
		v = v*10 + uint32(c-'0')
	}
	return v
}
