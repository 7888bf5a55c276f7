package stepca_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/hsm/hsmtest"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/policy"
	"github.com/tacline/tacline/provisioner/issuance"
	"github.com/tacline/tacline/stepca"
	"github.com/tacline/tacline/stepca/stepcadev"
	"github.com/tacline/tacline/stepca/stepcatest"
	"github.com/tacline/tacline/tacerr"
)

// badTemplate signs what tacline asked for, but one day shorter: the kind
// of drift an operator's template edit causes.
const badTemplate = `{
  "rawSubject": {{ toJson .Token.tacline.subject }},
  "serialNumber": {{ toJson .Token.tacline.serial }},
  "notBefore": {{ toJson .Token.tacline.not_before }},
  "notAfter": "2030-01-01T00:00:00Z",
  "extensions": {{ toJson .Token.tacline.extensions }}
}`

type fixture struct {
	ca        *stepcadev.CA
	good, bad *stepca.RA
	issuer    *issuance.Issuer
	badIssuer *issuance.Issuer
}

func setup(t *testing.T) fixture {
	t.Helper()
	r := stepcatest.StartRA(t, hsmtest.NewToken(t), func(pub crypto.PublicKey) []any {
		bad, err := stepca.DeviceProvisioner("tacline-devices-drifted", pub, badTemplate)
		if err != nil {
			t.Fatal(err)
		}
		return []any{bad}
	})
	c, raKey := r.CA, r.Key
	f := fixture{ca: c}
	for _, x := range []struct {
		prov string
		ra   **stepca.RA
		is   **issuance.Issuer
	}{{stepcatest.DeviceProvisioner, &f.good, &f.issuer}, {"tacline-devices-drifted", &f.bad, &f.badIssuer}} {
		cfg := r.Config
		cfg.Provisioner = x.prov
		ra, err := stepca.New(cfg, raKey)
		if err != nil {
			t.Fatal(err)
		}
		is, err := issuance.New(issuance.Config{IssuerCert: ra.IssuerCertificate(), Chain: []*x509.Certificate{ra.Root()}, Upstream: ra, Profile: policy.DefaultProfile()})
		if err != nil {
			t.Fatal(err)
		}
		*x.ra, *x.is = ra, is
	}
	return f
}

func deviceCSR(t *testing.T, cn string) (*x509.CertificateRequest, crypto.PublicKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, k)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr, k.Public()
}

func request(t *testing.T, serial string, pub crypto.PublicKey) issuance.Request {
	m, err := imei.Parse("490154203237518")
	if err != nil {
		t.Fatal(err)
	}
	return issuance.Request{DeviceSerial: serial, Manufacturer: "Acme Devices", Model: "Widget 5G", IMEIs: []imei.IMEI{m},
		PublicKey: pub, NotBefore: time.Now().UTC().Truncate(time.Second)}
}

func TestStepCASignsTheLintedCertificate(t *testing.T) {
	f := setup(t)
	ctx := context.Background()

	csr, pub := deviceCSR(t, "whatever-the-device-says")
	tok, err := f.issuer.Prepare(request(t, "SN-1", pub))
	if err != nil {
		t.Fatal(err)
	}
	cert, der, err := f.issuer.IssueUpstream(ctx, tok, csr)
	if err != nil {
		t.Fatalf("IssueUpstream: %v\n%s", err, f.ca.Log())
	}
	if string(cert.RawTBSCertificate) != string(tok.TBS()) || string(cert.Raw) != string(der) {
		t.Fatal("step-ca's certificate is not the linted TBS")
	}
	roots := x509.NewCertPool()
	roots.AddCert(f.ca.Root)
	inter := x509.NewCertPool()
	inter.AddCert(f.ca.Issuer)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("device certificate does not chain to step-ca's root: %v", err)
	}
	if cert.Subject.SerialNumber != "SN-1" || cert.SerialNumber.Cmp(tok.Serial()) != 0 || cert.NotAfter.Year() != 9999 {
		t.Fatalf("certificate fields: subject %v serial %x notAfter %s", cert.Subject, cert.SerialNumber, cert.NotAfter)
	}
	if _, _, err := f.issuer.IssueUpstream(ctx, tok, csr); !tacerr.Is(err, tacerr.InvalidState) {
		t.Fatalf("second IssueUpstream on one token: %v, want invalid_state", err)
	}

	// A serial revoked twice is revoked once.
	for i := 0; i < 2; i++ {
		if err := f.good.Revoke(ctx, cert.SerialNumber, "test"); err != nil {
			t.Fatalf("revoke #%d: %v", i+1, err)
		}
	}
}

func TestStepCAFailuresAreClassified(t *testing.T) {
	f := setup(t)
	ctx := context.Background()

	// A template that drifted from tacline's profile: refused, ambiguous
	// (step-ca did sign something under our serial).
	csr, pub := deviceCSR(t, "dev")
	tok, err := f.badIssuer.Prepare(request(t, "SN-2", pub))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = f.badIssuer.IssueUpstream(ctx, tok, csr)
	fl, ok := stepca.AsFailure(err)
	if !ok || !fl.Ambiguous || fl.Reason != "mismatch" || !tacerr.Is(err, tacerr.UpstreamRefused) || !strings.Contains(err.Error(), "validity") {
		t.Fatalf("drifted template: %v (failure %+v), want an ambiguous upstream_refused mismatch naming the validity", err, fl)
	}

	// A CSR whose key is not the one tacline certified: step-ca signs the
	// CSR's key, so the certificate is refused.
	tok, err = f.issuer.Prepare(request(t, "SN-3", pub))
	if err != nil {
		t.Fatal(err)
	}
	csr2, _ := deviceCSR(t, "other-key") // the CSR's key is not the certificate's
	_, _, err = f.issuer.IssueUpstream(ctx, tok, csr2)
	if fl, ok := stepca.AsFailure(err); !ok || !tacerr.Is(err, tacerr.UpstreamRefused) {
		t.Fatalf("CSR of another key: %v (%+v), want upstream_refused", err, fl)
	}

	// step-ca down: unavailable, nothing signed.
	f.ca.Stop()
	serials := 4
	err = afterStop(t, "sign", func() error {
		tok, err := f.issuer.Prepare(request(t, fmt.Sprintf("SN-%d", serials), pub))
		serials++
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = f.issuer.IssueUpstream(ctx, tok, csr)
		return err
	})
	fl, ok = stepca.AsFailure(err)
	if !ok || fl.Ambiguous || fl.Reason != "unreachable" || !tacerr.Is(err, tacerr.Unavailable) {
		t.Fatalf("step-ca stopped: %v (%+v), want unavailable, not ambiguous", err, fl)
	}
	if err := afterStop(t, "revoke", func() error { return f.good.Revoke(ctx, big.NewInt(12345), "test") }); !tacerr.Is(err, tacerr.Unavailable) {
		t.Fatalf("revoke with step-ca stopped: %v, want unavailable", err)
	}
	if err := f.ca.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.good.Revoke(ctx, big.NewInt(12345), "test"); err != nil {
		t.Fatalf("revoke after restart: %v", err)
	}
}

// afterStop runs call, a request to a step-ca that has just stopped, and
// returns its error. The client may still hold a connection kept alive from
// before the stop, which it has not yet seen closed: a request written on
// it gets no answer, and since step-ca might have read it before it
// stopped, that failure is rightly ambiguous (a timeout: the caller revokes
// the serial before it gives the intent up). Then the connection is gone
// and the next request dials: afterStop runs call once more, and that
// answer is the one to judge.
func afterStop(t *testing.T, what string, call func() error) error {
	t.Helper()
	err := call()
	if fl, ok := stepca.AsFailure(err); ok && fl.Ambiguous {
		if fl.Reason != "timeout" || !tacerr.Is(err, tacerr.UpstreamRefused) {
			t.Fatalf("%s with step-ca stopped, on a kept-alive connection: %v (%+v), want an ambiguous timeout", what, err, fl)
		}
		t.Logf("%s with step-ca stopped met a kept-alive connection (%v); once more", what, err)
		return call()
	}
	return err
}

// noSerialTemplate is DeviceTemplate without the serial: step-ca then
// picks its own.
const noSerialTemplate = `{
  "rawSubject": {{ toJson .Token.tacline.subject }},
  "notBefore": {{ toJson .Token.tacline.not_before }},
  "notAfter": {{ toJson .Token.tacline.not_after }},
  "extensions": {{ toJson .Token.tacline.extensions }}
}`

// TestStepCAStraySerialRevoked: a step-ca template that drops tacline's
// serial signs the device's key under a serial of its own; the certificate
// is refused (mismatch) and that serial is revoked at step-ca, which lists
// it on its CRL (the caller revokes tacline's serial only, so the device's
// certificate stayed valid and in no ledger).
func TestStepCAStraySerialRevoked(t *testing.T) {
	r := stepcatest.StartRA(t, hsmtest.NewToken(t), func(pub crypto.PublicKey) []any {
		p, err := stepca.DeviceProvisioner("tacline-devices-noserial", pub, noSerialTemplate)
		if err != nil {
			t.Fatal(err)
		}
		return []any{p}
	})
	cfg := r.Config
	cfg.Provisioner = "tacline-devices-noserial"
	ra, err := stepca.New(cfg, r.Key)
	if err != nil {
		t.Fatal(err)
	}
	is, err := issuance.New(issuance.Config{IssuerCert: ra.IssuerCertificate(), Chain: []*x509.Certificate{ra.Root()}, Upstream: ra, Profile: policy.DefaultProfile()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	csr, pub := deviceCSR(t, "dev")
	tok, err := is.Prepare(request(t, "SN-5", pub))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = is.IssueUpstream(ctx, tok, csr)
	fl, ok := stepca.AsFailure(err)
	if !ok || fl.Reason != "mismatch" || !fl.Ambiguous || !strings.Contains(err.Error(), "revoked at step-ca") {
		t.Fatalf("a template that drops the serial: %v (%+v), want a mismatch saying step-ca's serial was revoked", err, fl)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ra.Root())
	w := stepca.NewCRLWatcher(r.CA.URL+"/1.0/crl", roots)
	if err := w.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ours := w.Revoked(&x509.Certificate{SerialNumber: tok.Serial()}); ours || !strings.Contains(w.String(), ": 1 revoked") {
		t.Fatalf("step-ca's CRL: %s, want the stray serial on it\n%s", w, r.CA.Log())
	}
}
