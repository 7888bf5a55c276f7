package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/internal/openapitest"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
	"github.com/tacline/tacline/verify"
	"github.com/tacline/tacline/verify/online"
	"github.com/tacline/tacline/verify/revocation"
)

// fakeAuthn injects results into the authenticity routes (no logic): fail,
// when set for a method name, is returned by it.
type fakeAuthn struct {
	mu   sync.Mutex
	fail map[string]error
}

func (f *fakeAuthn) err(method string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fail[method]
}

func (f *fakeAuthn) NewChallenge(context.Context, string) (online.Challenge, error) {
	return online.Challenge{Nonce: "00ff", ExpiresAt: time.Now().Add(time.Minute)}, f.err("NewChallenge")
}

func (f *fakeAuthn) Verify(_ context.Context, r verify.Request) (verify.Result, error) {
	return verify.Result{Verdict: "genuine", Reasons: []string{"ok"}, IMEI: r.IMEI, CertificateSerial: "0a"}, f.err("Verify")
}

func (f *fakeAuthn) Lookup(_ context.Context, m imei.IMEI) (online.Lookup, error) {
	return online.Lookup{IMEI: m.String(), Status: "registered", Brand: "Acme"}, f.err("Lookup")
}

func (f *fakeAuthn) CRL(context.Context, string) (*store.CRLRecord, error) {
	if err := f.err("CRL"); err != nil {
		return nil, err
	}
	return &store.CRLRecord{DER: []byte{0x30, 0x00}}, nil
}

func (f *fakeAuthn) RespondOCSP(context.Context, []byte) (revocation.OCSPAnswer, error) {
	if err := f.err("RespondOCSP"); err != nil {
		return revocation.OCSPAnswer{}, err
	}
	return revocation.OCSPAnswer{DER: []byte{0x30, 0x03, 0x0a, 0x01, 0x01}}, nil
}

// fakeSites answers the sites routes (no logic), with fakeAuthn's fault
// injection.
type fakeSites struct{ *fakeAuthn }

func (f fakeSites) Authenticate(context.Context, string, string) error { return nil }

func (f fakeSites) GrantLease(_ context.Context, site string, req wire.LeaseRequest) (wire.Lease, error) {
	now := time.Now().UTC()
	return wire.Lease{ID: 1, Site: site, Pool: req.Pool, TAC: "00101234", SNRStart: "000000", SNREnd: "000009", GrantedAt: now,
		ExpiresAt: now.Add(time.Hour), Unused: 10}, f.err("GrantLease")
}

func (f fakeSites) Sync(context.Context, string, wire.SiteSyncRequest) (wire.SiteSyncResponse, error) {
	return wire.SiteSyncResponse{Applied: 1, AppliedSeq: 1, VerifiedSize: 1, Cosigned: "note"}, f.err("Sync")
}

func (f fakeSites) Status(_ context.Context, site string) (wire.SiteStatus, error) {
	return wire.SiteStatus{Site: site, Leases: []wire.Lease{}, Consistent: true}, f.err("Status")
}

// faultMethod is the method of the fakes behind each operation, where a
// test injects an error to get a documented error status.
var faultMethod = map[string]string{
	"POST " + wire.PathProvision: "Provision", "POST " + wire.PathAllocations: "Allocate", "POST " + wire.PathBind: "Bind",
	"POST " + wire.PathVoidIMEI: "Void", "POST " + wire.PathReissue: "Reissue", "POST " + wire.PathRevoke: "Revoke",
	"GET " + wire.PathDevice: "Device", "GET " + wire.PathIMEI: "IMEI", "GET " + wire.PathPools: "Pools",
	"GET " + wire.PathOpenAPI: "Station", "GET " + wire.PathMetrics: "Station",
	"POST " + PathChallenges: "NewChallenge", "POST " + PathVerify: "Verify", "GET " + PathLookup: "Lookup",
	"GET " + PathCRL: "CRL", "POST " + PathOCSP: "RespondOCSP", "GET " + PathOCSPGet: "RespondOCSP",
	"POST " + wire.PathSiteLeases: "GrantLease", "POST " + wire.PathSiteSync: "Sync", "GET " + wire.PathSiteStatus: "Status",
}

// statusCode is a tacerr code the API maps to each status.
var statusCode = map[int]tacerr.Code{
	400: tacerr.InvalidInput, 403: tacerr.Forbidden, 404: tacerr.NotFound, 409: tacerr.Conflict,
	422: tacerr.TACNotApproved, 500: tacerr.Internal, 502: tacerr.UpstreamRefused, 503: tacerr.Unavailable,
}

// TestOpenAPIResponsesExercised: every response api/openapi.yaml documents
// (each operation's success and error statuses: 400, 401, 403, 404, 409,
// 413, 415, 422, 429, 500, 502, 503) is produced by the server, and each
// exchange matches the document (body schema, problem+json, headers). The
// list of pairs is the document's own: a response added to the document
// without a way to produce it fails here.
func TestOpenAPIResponsesExercised(t *testing.T) {
	doc := openapitest.MustNew("api/openapi.yaml", openAPIDoc)
	doc.Refused = APIDoc.Refused
	pki := newPKI(t)
	fake := newFake(t, pki)
	fake.addStation("S1", false)
	fake.addStation("S-OFF", true)
	authn := &fakeAuthn{fail: map[string]error{}}
	strict, err := WithAuthenticity(fake, authn, DefaultAuthenticityConfig())
	if err != nil {
		t.Fatal(err)
	}
	public, err := WithAuthenticity(fake, authn, AuthenticityConfig{PublicVerify: true, PublicRate: 1e-6, PublicBurst: 1, PublicSiteRate: 1e-6, PublicSiteBurst: 1,
		LookupRate: 1e-6, LookupBurst: 1, LookupSiteRate: 1e-6, LookupSiteBurst: 1})
	if err != nil {
		t.Fatal(err)
	}
	servers := map[string]*testServer{"strict": startServer(t, pki, strict, nil, func(s *Server) { s.SetSites(fakeSites{authn}) }),
		"public": startServer(t, pki, public, nil)}
	certs := map[string]*tls.Certificate{"none": nil}
	for who, st := range map[string]ca.Station{
		"station": {ID: "S1", Roles: []string{"operator"}}, "disabled": {ID: "S-OFF"}, "regulator": {Roles: []string{"regulator"}},
		"auditor": {Roles: []string{"auditor"}}, "operator": {Roles: []string{"operator"}}, "site": {Site: "s1"},
	} {
		c := pki.clientCert(t, st)
		certs[who] = &c
	}
	m := imei.MustNew(101234, 17).String()
	bodies := map[string]any{
		"POST " + wire.PathProvision:   wire.ProvisionRequest{RequestID: "r1", DeviceSerial: "SN1", Product: "w", CSR: testCSR},
		"POST " + wire.PathAllocations: wire.AllocationRequest{RequestID: "a1", Pool: "p1", Count: 1},
		"POST " + wire.PathBind:        wire.BindRequest{RequestID: "b1", IMEIs: []string{m}, DeviceSerial: "SN1", CSR: testCSR},
		"POST " + wire.PathVoidIMEI:    wire.VoidRequest{Reason: "scrapped"},
		"POST " + wire.PathReissue:     wire.ReissueRequest{RequestID: "ri1", CSR: testCSR},
		"POST " + wire.PathRevoke:      wire.RevokeRequest{Reason: "stolen"},
		"POST " + PathVerify:           verify.Request{IMEI: m, Chain: "x", Nonce: "00ff", Signature: "AA=="},
		"POST " + wire.PathSiteLeases:  wire.LeaseRequest{Pool: "p1", Size: 10},
		"POST " + wire.PathSiteSync:    wire.SiteSyncRequest{Events: []wire.SiteEvent{}, Checkpoint: "note"},
	}
	path := strings.NewReplacer("{site}", "s1", "{imei}", m, "{serial}", "SN1", "{file}", "0a1b.crl", "{request}", "MAA%3D").Replace

	for _, pair := range doc.Operations() {
		t.Run(pair.String(), func(t *testing.T) {
			method, tmpl, _ := strings.Cut(pair.Operation, " ")
			ts, who := servers["strict"], "station"
			switch tmpl {
			case PathChallenges, PathVerify:
				who = "regulator"
			case wire.PathRevoke:
				who = "operator"
			case wire.PathSiteLeases, wire.PathSiteSync, wire.PathSiteStatus:
				who = "site"
			}
			var body []byte
			ct := "application/json"
			if b, ok := bodies[pair.Operation]; ok {
				body = mustJSON(t, b)
			}
			if tmpl == PathOCSP {
				body, ct = []byte{0x30, 0x00}, "application/ocsp-request"
			}
			urlPath := path(tmpl)
			fault := faultMethod[pair.Operation]
			var restore func()
			switch s := pair.Status; {
			case s == 200 && (tmpl == wire.PathProvision || tmpl == wire.PathAllocations || tmpl == wire.PathBind || tmpl == wire.PathReissue):
				fake.mu.Lock()
				fake.replayed = true
				fake.mu.Unlock()
				restore = func() { fake.mu.Lock(); fake.replayed = false; fake.mu.Unlock() }
			case s < 300:
			case s == 401:
				who = "none"
			case s == 403 && fault == "Station", s == 403 && body != nil && tmpl != PathVerify:
				who = "disabled"
			case s == 403 && (tmpl == PathChallenges || tmpl == PathVerify):
				who = "auditor" // not a verifier
			case s == 413:
				limit := wire.MaxBodyBytes
				if tmpl == wire.PathSiteSync {
					limit = wire.MaxSyncBodyBytes
				}
				body = append(append([]byte(`{"request_id":"`), bytes.Repeat([]byte("x"), limit)...), '"', '}')
			case s == 415:
				ct = "text/plain"
			case s == 429:
				ts, who = servers["public"], "none"
				for range 3 { // spend the burst
					sendRaw(t, ts, doc, certs[who], method, urlPath, ct, body)
				}
			case s == 503 && tmpl == wire.PathReadyz:
				fake.mu.Lock()
				fake.ready = tacerr.New(tacerr.Unavailable, "ledger down")
				fake.mu.Unlock()
				restore = func() { fake.mu.Lock(); fake.ready = nil; fake.mu.Unlock() }
			case s == 400 && body != nil && tmpl != PathVerify:
				body = []byte(`{"unknown_field": 1}`)
			case s == 400 && strings.Contains(tmpl, "{imei}") && fault != "Lookup":
				urlPath = strings.Replace(tmpl, "{imei}", "12345", 1)
			default:
				code, ok := statusCode[s]
				if !ok || fault == "" {
					t.Fatalf("no way to produce %s: add one to this test", pair)
				}
				err := tacerr.New(code, "injected for the contract test")
				if fault == "Station" {
					fake.setFail("Station", err)
					restore = func() { fake.setFail("Station", nil) }
				} else if _, isAuth := map[string]bool{"NewChallenge": true, "Verify": true, "Lookup": true, "CRL": true, "RespondOCSP": true,
					"GrantLease": true, "Sync": true, "Status": true}[fault]; isAuth {
					authn.mu.Lock()
					authn.fail[fault] = err
					authn.mu.Unlock()
					restore = func() { authn.mu.Lock(); delete(authn.fail, fault); authn.mu.Unlock() }
				} else {
					fake.setFail(fault, err)
					restore = func() { fake.setFail(fault, nil) }
				}
			}
			if restore != nil {
				defer restore()
			}
			got := sendRaw(t, ts, doc, certs[who], method, urlPath, ct, body)
			if got != pair.Status {
				t.Fatalf("%s %s as %s: status %d, want %d", method, urlPath, who, got, pair.Status)
			}
		})
	}
	if missing := doc.Missing(); len(missing) > 0 {
		t.Errorf("documented responses never produced: %v", missing)
	}
}

// sendRaw sends one request through a client checked by doc and returns
// the status.
func sendRaw(t *testing.T, ts *testServer, doc *openapitest.Checker, cert *tls.Certificate, method, path, ct string, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(method, ts.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", ct)
	}
	c := &http.Client{Transport: doc.Transport(t, ts.transport(cert)), Timeout: 30 * time.Second}
	return send(t, c, req).status
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(fmt.Errorf("encode %T: %w", v, err))
	}
	return b
}
