package server_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/config"
	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/stepca"
	"github.com/tacline/tacline/stepca/stepcatest"
	"github.com/tacline/tacline/store"
)

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
	env, err := devenv.Setup(ctx, devenv.Options{Dir: filepath.Join(t.TempDir(), "env"), Stations: 1})
	if err != nil {
		t.Fatal(err)
	}
	r := stepcatest.StartRA(t, env.Config.HSM, nil)
	sca := r.CA
	env.Config.Issuer.Kind, env.Config.StepCA = config.IssuerStepCA, r.Config
	creds, err := factory.LoadCreds(env.CredsDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	sc := creds.Stations[0]
	n := 0
	newRequest := func() wire.ProvisionRequest {
		t.Helper()
		n++
		dev, err := factory.NewDevice(fmt.Sprintf("ROT-%03d", n))
		if err != nil {
			t.Fatal(err)
		}
		csr, err := dev.CSR()
		if err != nil {
			t.Fatal(err)
		}
		return wire.ProvisionRequest{RequestID: factory.NewRequestID(), DeviceSerial: dev.Serial(), Product: sc.Product, Pool: sc.Pool, CSR: string(csr)}
	}
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
	roots.AddCert(sca.Root)
	chainsTo := func(resp *wire.ProvisionResponse, inter *x509.Certificate) *x509.Certificate {
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
	if err := srv.Service.Revoke(ctx, provisioner.RevokeInput{Actor: provisioner.Actor{ID: "test-operator", Roles: []provisioner.Role{provisioner.RoleOperator}, Scope: provisioner.ScopeAll},
		DeviceSerial: first.DeviceSerial, Reason: "stolen"}); err != nil {
		t.Fatal(err)
	}
	crl := stepca.NewCRLWatcher(sca.URL+"/1.0/crl", roots)
	if err := crl.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := crl.Revoked(oldCert); !ok {
		t.Fatalf("device %s of the old intermediate, revoked in tacline, is not on step-ca's CRL", first.DeviceSerial)
	}
	rep, err := srv.DB.Check(ctx)
	if err != nil || !rep.OK() {
		t.Fatalf("ledger check: %+v %v", rep, err)
	}
}
