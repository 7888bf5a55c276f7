package server_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/ca/castore"
	"github.com/tacline/tacline/config"
	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/provisioner/issuance"
	"github.com/tacline/tacline/server"
	"github.com/tacline/tacline/stepca"
	"github.com/tacline/tacline/stepca/stepcadev"
	"github.com/tacline/tacline/stepca/stepcatest"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// driftedTemplate is an operator's template edit that changes the validity
// tacline fixed.
const driftedTemplate = `{
  "rawSubject": {{ toJson .Token.tacline.subject }},
  "serialNumber": {{ toJson .Token.tacline.serial }},
  "notBefore": {{ toJson .Token.tacline.not_before }},
  "notAfter": "2031-01-01T00:00:00Z",
  "extensions": {{ toJson .Token.tacline.extensions }}
}`

// TestStepCAIssuer runs an in-process server with issuer kind stepca
// against a real step-ca whose intermediate key is in the same SoftHSM2
// token, on SQLite and PostgreSQL: devices are provisioned through step-ca
// and chain to its root; with step-ca stopped a request is a retryable 503
// and its replay completes once step-ca is back (no IMEI lost), and further
// requests reserve nothing until step-ca answers /health again; an intent
// left pending while step-ca is down is abandoned by recovery only after its
// serial was revoked at step-ca; a template that drifted from the profile
// is refused (502), its serial revoked, the intent abandoned, its IMEIs
// voided with the reason, and counted in the alert metric. The ledger is
// sound at the end and nothing is left pending.
func TestStepCAIssuer(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) { testStepCAIssuer(t, d) })
	}
}

func testStepCAIssuer(t *testing.T, d store.Dialect) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	opts := devenv.Options{Dir: filepath.Join(t.TempDir(), "env"), Stations: 1, Driver: d}
	if d == store.Postgres {
		opts.DSN = storetest.PostgresDSN(t)
	}
	env, err := devenv.Setup(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	r := stepcatest.StartRA(t, env.Config.HSM, nil)
	sca := r.CA
	drifted, err := stepca.DeviceProvisioner(stepcatest.DeviceProvisioner, r.Key.Public(), driftedTemplate)
	if err != nil {
		t.Fatal(err)
	}
	env.Config.Issuer.Kind, env.Config.StepCA = config.IssuerStepCA, r.Config
	srv, url := serve(ctx, t, env)
	creds, err := factory.LoadCreds(env.CredsDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	sc := creds.Stations[0]
	client, err := factory.NewClient(factory.ClientConfig{ServerURL: url, CertFile: sc.CertFile, KeyFile: sc.KeyFile, CAFile: creds.ServerCAFile, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	n := 0
	newRequest := func() wire.ProvisionRequest {
		t.Helper()
		n++
		return deviceRequest(t, fmt.Sprintf("STEP-%03d", n), sc)
	}
	roots := x509.NewCertPool()
	roots.AddCert(sca.Root)
	checkIssued := func(resp *wire.ProvisionResponse) {
		t.Helper()
		cert := parsePEM(t, resp.Certificate)
		inter := x509.NewCertPool()
		inter.AddCert(parsePEM(t, resp.Chain))
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Fatalf("device %s does not chain to step-ca's root: %v", resp.DeviceSerial, err)
		}
		if !parsePEM(t, resp.Chain).Equal(sca.Issuer) {
			t.Fatalf("device %s: chain starts with %s, want step-ca's intermediate", resp.DeviceSerial, parsePEM(t, resp.Chain).Subject)
		}
	}
	apiErr := func(err error) *factory.APIError {
		t.Helper()
		var ae *factory.APIError
		if !errors.As(err, &ae) {
			t.Fatalf("want an API error, got %v", err)
		}
		return ae
	}
	imeiState := func(s string) store.IMEIRecord {
		t.Helper()
		m, err := imei.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := srv.DB.LookupIMEI(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	intentIMEIs := func(requestID string) []store.IMEIRecord {
		t.Helper()
		is, err := srv.DB.IssuanceByRequestID(ctx, requestID)
		if err != nil || is == nil {
			t.Fatalf("intent %s: %v", requestID, err)
		}
		recs, err := srv.DB.GroupIMEIs(ctx, is.ReservationID, is.Group)
		if err != nil {
			t.Fatal(err)
		}
		return recs
	}

	// 1. Through step-ca.
	var issued []*wire.ProvisionResponse
	for i := 0; i < 3; i++ {
		resp, err := client.Provision(ctx, newRequest())
		if err != nil {
			t.Fatalf("provision through step-ca: %v\n%s", err, sca.Log())
		}
		checkIssued(resp)
		if rec := imeiState(resp.IMEIs[0]); rec.State != store.StateBound {
			t.Fatalf("IMEI %s is %s, want BOUND", resp.IMEIs[0], rec.State)
		}
		issued = append(issued, resp)
	}
	// A device revoked in tacline is revoked at step-ca too (its CRL).
	if err := srv.Service.Revoke(ctx, provisioner.RevokeInput{Actor: provisioner.Actor{ID: "test-operator", Roles: []provisioner.Role{provisioner.RoleOperator}, Scope: provisioner.ScopeAll},
		DeviceSerial: issued[0].DeviceSerial, Reason: "stolen"}); err != nil {
		t.Fatal(err)
	}
	crl := stepca.NewCRLWatcher(sca.URL+"/1.0/crl", roots)
	if err := crl.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := crl.Revoked(parsePEM(t, issued[0].Certificate)); !ok {
		t.Fatalf("device %s revoked in tacline is not on step-ca's CRL", issued[0].DeviceSerial)
	}
	if _, ok := crl.Revoked(parsePEM(t, issued[1].Certificate)); ok {
		t.Fatalf("device %s is on step-ca's CRL without being revoked", issued[1].DeviceSerial)
	}

	// 2. step-ca stopped: retryable 503, intent pending; the replay after
	// step-ca is back completes it with the same IMEIs.
	sca.Stop()
	req := newRequest()
	_, err = client.Provision(ctx, req)
	if ae := apiErr(err); ae.Status != http.StatusServiceUnavailable || !ae.Problem.Retryable {
		t.Fatalf("step-ca stopped: %d %+v, want a retryable 503", ae.Status, ae.Problem)
	}
	pending := intentIMEIs(req.RequestID)
	// While step-ca is known to be down, new requests reserve nothing.
	held := newRequest()
	_, err = client.Provision(ctx, held)
	if ae := apiErr(err); ae.Status != http.StatusServiceUnavailable || !ae.Problem.Retryable {
		t.Fatalf("step-ca still stopped: %d %+v, want a retryable 503", ae.Status, ae.Problem)
	}
	if is, err := srv.DB.IssuanceByRequestID(ctx, held.RequestID); err != nil || is != nil {
		t.Fatalf("a request refused while step-ca is down recorded an intent: %+v %v", is, err)
	}
	if err := sca.Start(ctx); err != nil {
		t.Fatal(err)
	}
	resp, err := client.Provision(ctx, req)
	if err != nil {
		t.Fatalf("replay after step-ca restarted: %v", err)
	}
	checkIssued(resp)
	if len(resp.IMEIs) != len(pending) || !strings.HasPrefix(resp.IMEIs[0], pending[0].IMEI.String()[:14]) {
		t.Fatalf("replay got IMEIs %v, the intent reserved %v", resp.IMEIs, pending)
	}

	// 3. An intent left pending while step-ca is down: recovery (a clock
	// past the intent timeout) keeps it until its serial is revoked at
	// step-ca, then abandons it.
	sca.Stop()
	lost := newRequest()
	if _, err := client.Provision(ctx, lost); apiErr(err).Status != http.StatusServiceUnavailable {
		t.Fatalf("step-ca stopped: %v, want 503", err)
	}
	keyID := srv.Service.ActiveKeyID()
	later, err := provisioner.New(provisioner.Config{DB: srv.DB, Manufacturer: devenv.Manufacturer, Active: keyID,
		Issuers: map[string]*issuance.Issuer{keyID: srv.Service.ActiveIssuer()},
		Now:     func() time.Time { return time.Now().Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := later.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if is, _ := srv.DB.IssuanceByRequestID(ctx, lost.RequestID); is.State != store.IssuancePending {
		t.Fatalf("recovery abandoned an intent whose serial it could not revoke at step-ca (state %s)", is.State)
	}
	if err := sca.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := later.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range intentIMEIs(lost.RequestID) {
		if rec := imeiState(r.IMEI.String()); rec.State != store.StateVoided || rec.Reason != "abandoned" || !strings.Contains(rec.Note, "revoked at the upstream CA") {
			t.Fatalf("IMEI %s of the abandoned intent: %s %s %q", r.IMEI, rec.State, rec.Reason, rec.Note)
		}
	}

	// 4. A template that drifted from tacline's profile: refused, the
	// serial revoked, the intent abandoned, the IMEIs voided, alerted.
	if err := sca.SetProvisioners(ctx, []any{drifted}); err != nil {
		t.Fatal(err)
	}
	bad := newRequest()
	_, err = client.Provision(ctx, bad)
	if ae := apiErr(err); ae.Status != http.StatusBadGateway || ae.Problem.Code != "upstream_refused" {
		t.Fatalf("drifted template: %d %+v, want 502 upstream_refused", ae.Status, ae.Problem)
	}
	if is, _ := srv.DB.IssuanceByRequestID(ctx, bad.RequestID); is.State != store.IssuanceAbandoned {
		t.Fatalf("refused intent is %s, want abandoned", is.State)
	}
	for _, r := range intentIMEIs(bad.RequestID) {
		if rec := imeiState(r.IMEI.String()); rec.State != store.StateVoided || !strings.Contains(rec.Note, "mismatch") || !strings.Contains(rec.Note, "revoked at the upstream CA") {
			t.Fatalf("IMEI %s of the refused intent: %s %q", r.IMEI, rec.State, rec.Note)
		}
	}
	mf, err := srv.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range mf {
		if f.GetName() == "tacline_upstream_ca_failures_total" {
			for _, m := range f.GetMetric() {
				got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	if got["mismatch"] != 1 || got["unreachable"] != 2 {
		t.Fatalf("tacline_upstream_ca_failures_total = %v, want mismatch 1, unreachable 2", got)
	}

	// The ledger is sound and nothing is pending.
	rep, err := srv.DB.Check(ctx)
	if err != nil || !rep.OK() {
		t.Fatalf("ledger check: %+v %v", rep, err)
	}
	left, err := srv.DB.PendingIssuances(ctx, time.Now().Add(time.Hour), nil, 10)
	if err != nil || len(left) != 0 {
		t.Fatalf("pending intents left: %d %v", len(left), err)
	}
}

// TestStepCAIssuerRotated: after step-ca's intermediate is rotated and
// stepca.issuer_cert names the new one, a server still loads the old
// issuer's record: the replay of a request signed under the old
// intermediate answers its stored certificate with the old intermediate's
// chain (it got the new one's, which does not verify it), a device of the
// old intermediate revoked in tacline is revoked at step-ca too (it was
// skipped), a request left pending under the old intermediate is refused
// saying so and abandoned after its serial is revoked at step-ca, and new
// devices chain to the new intermediate. Real step-ca, restarted with the
// new intermediate on the same database.
func TestStepCAIssuerRotated(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env, sca, sc, connect, roots := stepCAEnv(ctx, t)
	n := 0
	newRequest := func() wire.ProvisionRequest {
		t.Helper()
		n++
		return deviceRequest(t, fmt.Sprintf("ROT-%03d", n), sc)
	}
	chainsTo := func(resp *wire.ProvisionResponse, inter *x509.Certificate) *x509.Certificate {
		t.Helper()
		return chainsTo(t, roots, resp, inter)
	}

	// Under the first intermediate: one device, one request left pending
	// (step-ca stopped while it was signed).
	_, url, stop, err := devenv.ServeInProcess(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	client := connect(url)
	oldInter := sca.Issuer
	first := newRequest()
	resp, err := client.Provision(ctx, first)
	if err != nil {
		t.Fatalf("provision through step-ca: %v\n%s", err, sca.Log())
	}
	oldCert := chainsTo(resp, oldInter)
	sca.Stop()
	pending := newRequest()
	if _, err := client.Provision(ctx, pending); err == nil {
		t.Fatal("provisioned with step-ca stopped")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// step-ca's intermediate rotated; stepca.issuer_cert names the new one.
	if err := sca.RotateIntermediate(ctx, "stepca-intermediate-2"); err != nil {
		t.Fatalf("rotate step-ca's intermediate: %v\n%s", err, sca.Log())
	}
	env.Config.StepCA.IssuerCert = sca.IssuerFile
	srv, url := serve(ctx, t, env)
	client = connect(url)
	if st := srv.Issuers(); len(st.Unusable) != 0 {
		t.Errorf("issuers after the rotation: loaded %v, unusable %v; want every issuer loaded", st.Loaded, st.Unusable)
	}

	// The replay of the old request: its stored certificate, the old chain.
	resp, err = client.Provision(ctx, first)
	if err != nil {
		t.Fatalf("replay of a request signed under the old intermediate: %v", err)
	}
	if got := chainsTo(resp, oldInter); !got.Equal(oldCert) {
		t.Fatalf("the replay answered serial %x, the request got %x", got.SerialNumber, oldCert.SerialNumber)
	}
	// New devices: the new intermediate.
	resp, err = client.Provision(ctx, newRequest())
	if err != nil {
		t.Fatalf("provision after the rotation: %v\n%s", err, sca.Log())
	}
	chainsTo(resp, sca.Issuer)

	// The request pending under the old intermediate cannot be completed
	// (step-ca no longer signs under it): refused, its serial revoked at
	// step-ca, the intent abandoned.
	_, err = client.Provision(ctx, pending)
	if ae, ok := err.(*factory.APIError); !ok || ae.Problem.Code != "upstream_refused" {
		t.Fatalf("replay of a request pending under the old intermediate: %v, want upstream_refused", err)
	}
	if is, err := srv.DB.IssuanceByRequestID(ctx, pending.RequestID); err != nil || is.State != store.IssuanceAbandoned {
		t.Fatalf("the intent pending under the old intermediate: %+v %v, want abandoned", is, err)
	}

	// A device of the old intermediate revoked in tacline: on step-ca's CRL.
	revokedAtStepCA(ctx, t, srv, sca, roots, first.DeviceSerial, oldCert, "of the old intermediate")
	rep, err := srv.DB.Check(ctx)
	if err != nil || !rep.OK() {
		t.Fatalf("ledger check: %+v %v", rep, err)
	}
}

// stepCAEnv sets up a development environment with one station and issuer
// kind stepca at a real step-ca (its RA key in the environment's HSM). It
// returns the station's credentials, how to connect that station to a
// server's URL and step-ca's root as a pool.
func stepCAEnv(ctx context.Context, t *testing.T) (*devenv.Env, *stepcadev.CA, factory.StationCreds, func(url string) *factory.Client, *x509.CertPool) {
	t.Helper()
	env, err := devenv.Setup(ctx, devenv.Options{Dir: filepath.Join(t.TempDir(), "env"), Stations: 1})
	if err != nil {
		t.Fatal(err)
	}
	r := stepcatest.StartRA(t, env.Config.HSM, nil)
	env.Config.Issuer.Kind, env.Config.StepCA = config.IssuerStepCA, r.Config
	creds, err := factory.LoadCreds(env.CredsDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	sc := creds.Stations[0]
	connect := func(url string) *factory.Client {
		t.Helper()
		c, err := factory.NewClient(factory.ClientConfig{ServerURL: url, CertFile: sc.CertFile, KeyFile: sc.KeyFile, CAFile: creds.ServerCAFile, MaxRetries: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	roots := x509.NewCertPool()
	roots.AddCert(r.CA.Root)
	return env, r.CA, sc, connect, roots
}

// revokedAtStepCA revokes device (certificate cert) in tacline as an
// operator and checks that cert is then on step-ca's CRL; what says which
// device it is in the failure.
func revokedAtStepCA(ctx context.Context, t *testing.T, srv *server.Server, sca *stepcadev.CA, roots *x509.CertPool, device string, cert *x509.Certificate, what string) {
	t.Helper()
	if err := srv.Service.Revoke(ctx, provisioner.RevokeInput{Actor: provisioner.Actor{ID: "test-operator", Roles: []provisioner.Role{provisioner.RoleOperator}, Scope: provisioner.ScopeAll},
		DeviceSerial: device, Reason: "stolen"}); err != nil {
		t.Fatal(err)
	}
	crl := stepca.NewCRLWatcher(sca.URL+"/1.0/crl", roots)
	if err := crl.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := crl.Revoked(cert); !ok {
		t.Fatalf("device %s %s, revoked in tacline, is not on step-ca's CRL", device, what)
	}
}

// chainsTo checks that the answer's chain starts with inter and that its
// certificate verifies with it up to roots; it returns the certificate.
func chainsTo(t *testing.T, roots *x509.CertPool, resp *wire.ProvisionResponse, inter *x509.Certificate) *x509.Certificate {
	t.Helper()
	cert, chain := parsePEM(t, resp.Certificate), parsePEM(t, resp.Chain)
	if !chain.Equal(inter) {
		t.Fatalf("device %s: the answer's chain starts with %q, want %q", resp.DeviceSerial, chain.Subject, inter.Subject)
	}
	pool := x509.NewCertPool()
	pool.AddCert(chain)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("device %s does not verify with the chain it was answered: %v", resp.DeviceSerial, err)
	}
	return cert
}

// TestStepCASwitchBack: issuer kind hsm while the ledger's active issuer
// is step-ca's refuses to start; after tacline switches back from issuer
// kind stepca to an HSM issuer (`ca rotate`, then issuer.kind hsm with the
// stepca section kept) and restarts, step-ca's issuer is loaded retired: the
// replay of a request step-ca signed answers its stored certificate with
// step-ca's chain (the issuer was unusable: the replay failed), a request
// left pending under step-ca is refused and abandoned, a device step-ca
// signed, revoked in tacline, is revoked at step-ca too, and new devices
// are issued under the HSM issuer. Real step-ca.
func TestStepCASwitchBack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env, sca, sc, connect, roots := stepCAEnv(ctx, t)

	// Issuer kind stepca: one device signed by step-ca.
	_, url, stop, err := devenv.ServeInProcess(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	first := deviceRequest(t, "BACK-001", sc)
	resp, err := connect(url).Provision(ctx, first)
	if err != nil {
		t.Fatalf("provision through step-ca: %v\n%s", err, sca.Log())
	}
	stepCert := chainsTo(t, roots, resp, sca.Issuer)
	// A request left pending under step-ca (stopped while it was signed).
	sca.Stop()
	pending := deviceRequest(t, "BACK-PENDING", sc)
	if _, err := connect(url).Provision(ctx, pending); err == nil {
		t.Fatal("provisioned with step-ca stopped")
	}
	if err := sca.Start(ctx); err != nil {
		t.Fatal(err)
	}

	// issuer.kind hsm while the ledger's active issuer is still step-ca's:
	// the server refuses to start, saying what to do.
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	env.Config.Issuer.Kind = config.IssuerHSM
	if _, _, stop, err := devenv.ServeInProcess(ctx, env); err == nil {
		stop()
		t.Fatal("a server with issuer kind hsm started while the ledger's active issuer is step-ca's")
	} else if tacerr.CodeOf(err) != tacerr.InvalidConfig || !strings.Contains(err.Error(), "activate an HSM issuer") {
		t.Fatalf("issuer kind hsm, step-ca's issuer active: %v, want invalid_config saying to activate an HSM issuer", err)
	}
	env.Config.Issuer.Kind = config.IssuerStepCA
	srv, _, stop, err := devenv.ServeInProcess(ctx, env)
	if err != nil {
		t.Fatal(err)
	}

	// Back to an HSM issuer: `tacline ca rotate` (another ledger handle,
	// the HSM keys through the server's token), then issuer.kind hsm with
	// the stepca section kept, and a restart.
	db, err := server.OpenLedger(ctx, env.Config)
	if err != nil {
		t.Fatal(err)
	}
	root, _, rootSigner, err := castore.ActiveCA(ctx, db, srv.Token, store.IssuerRoot)
	if err != nil {
		t.Fatal(err)
	}
	rec, _, err := ca.RotateDev(ctx, castore.Issuers{DB: db, Kind: store.IssuerDevice, Actor: "test"}, castore.Keys{Token: srv.Token}, root, rootSigner,
		ca.CeremonyOptions{IssuerLabel: "tacline-device-ca-back", Organization: devenv.Manufacturer, Now: time.Now()})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	env.Config.Issuer.Kind = config.IssuerHSM
	srv, url = serve(ctx, t, env)
	client := connect(url)
	if st := srv.Issuers(); st.Active != rec.KeyID || len(st.Unusable) != 0 {
		t.Fatalf("issuers after the switch back: %+v; want %s active and every issuer loaded", st, rec.KeyID)
	}

	// The replay of the request step-ca signed: its stored certificate,
	// step-ca's chain.
	resp, err = client.Provision(ctx, first)
	if err != nil {
		t.Fatalf("replay of a request step-ca signed, after the switch back: %v", err)
	}
	if got := chainsTo(t, roots, resp, sca.Issuer); !got.Equal(stepCert) {
		t.Fatalf("the replay answered serial %x, the request got %x", got.SerialNumber, stepCert.SerialNumber)
	}
	// The request pending under step-ca cannot be completed (tacline no
	// longer issues through step-ca): refused, its serial revoked at
	// step-ca, the intent abandoned.
	_, err = client.Provision(ctx, pending)
	if ae, ok := err.(*factory.APIError); !ok || ae.Problem.Code != "upstream_refused" || !strings.Contains(ae.Problem.Detail, "tacline no longer issues") {
		t.Fatalf("replay of a request pending under step-ca after the switch back: %v, want upstream_refused saying tacline no longer issues under it", err)
	}
	if is, err := srv.DB.IssuanceByRequestID(ctx, pending.RequestID); err != nil || is.State != store.IssuanceAbandoned {
		t.Fatalf("the intent pending under step-ca: %+v %v, want abandoned", is, err)
	}
	// New devices: the HSM issuer.
	resp, err = client.Provision(ctx, deviceRequest(t, "BACK-002", sc))
	if err != nil {
		t.Fatalf("provision after the switch back: %v", err)
	}
	if got := issuerOf(t, resp); got != rec.KeyID {
		t.Fatalf("device issued under %s after the switch back, want the HSM issuer %s", got, rec.KeyID)
	}

	// The device step-ca signed, revoked in tacline: on step-ca's CRL.
	revokedAtStepCA(ctx, t, srv, sca, roots, first.DeviceSerial, stepCert, "signed by step-ca, after the switch back")
	rep, err := srv.DB.Check(ctx)
	if err != nil || !rep.OK() {
		t.Fatalf("ledger check: %+v %v", rep, err)
	}
}
