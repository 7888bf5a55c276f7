package stepca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/hsm/hsmtest"
	"github.com/tacline/tacline/stepca"
	"github.com/tacline/tacline/stepca/stepcadev"
	"github.com/tacline/tacline/stepca/stepcatest"
	"github.com/tacline/tacline/tacerr"
)

// TestStationBootstrapAndRenew: a station identity from step-ca with a
// one-time token, carrying the URI SAN the provisioner template writes from
// the token's subject; the token works once; renewal keeps the key and the
// station URI and replaces the file.
func TestStationBootstrapAndRenew(t *testing.T) {
	ctx := context.Background()
	c, ott := stationCA(t, "F1-L3-S07")
	dir := filepath.Join(t.TempDir(), "F1-L3-S07")
	cert, err := stepca.Bootstrap(ctx, c.URL, c.RootFile, ott, dir)
	if err != nil {
		t.Fatalf("bootstrap: %v\n%s", err, c.Log())
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != "urn:tacline:station:F1-L3-S07" || cert.Subject.CommonName != "F1-L3-S07" {
		t.Fatalf("station certificate names %v (CN %q)", cert.URIs, cert.Subject.CommonName)
	}
	if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Fatalf("extended key usage %v, want clientAuth only", cert.ExtKeyUsage)
	}
	if got := cert.NotAfter.Sub(cert.NotBefore); got < 59*time.Minute || got > 62*time.Minute {
		t.Fatalf("lifetime %s, want the provisioner's 1h", got)
	}
	if _, err := stepca.Bootstrap(ctx, c.URL, c.RootFile, ott, filepath.Join(t.TempDir(), "again")); !tacerr.Is(err, tacerr.UpstreamRefused) {
		t.Fatalf("a one-time token used twice: %v, want upstream_refused", err)
	}

	r, err := stepca.NewRenewer(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := cert.NotBefore.Add(40 * time.Minute); !r.RenewAt().Equal(want) {
		t.Fatalf("renewal due at %s, want two thirds into the life (%s)", r.RenewAt(), want)
	}
	renewed := 0
	r.OnRenew = func(*x509.Certificate) { renewed++ }
	next, err := r.Renew(ctx)
	if err != nil {
		t.Fatalf("renew: %v\n%s", err, c.Log())
	}
	if next.SerialNumber.Cmp(cert.SerialNumber) == 0 || next.URIs[0].String() != "urn:tacline:station:F1-L3-S07" ||
		!next.PublicKey.(*ecdsa.PublicKey).Equal(cert.PublicKey) || renewed != 1 || r.Leaf() != next {
		t.Fatalf("renewed certificate: serial %x (was %x), URIs %v, same key %v, OnRenew %d", next.SerialNumber, cert.SerialNumber,
			next.URIs, next.PublicKey.(*ecdsa.PublicKey).Equal(cert.PublicKey), renewed)
	}
	r2, err := stepca.NewRenewer(dir)
	if err != nil || r2.Leaf().SerialNumber.Cmp(next.SerialNumber) != 0 {
		t.Fatalf("the renewed certificate is not what the directory holds: %v", err)
	}
}

// TestBootstrapUnwritableDirKeepsToken: a station directory the identity
// cannot be written into is refused (output_failed on dir) before step-ca
// is asked, so the one-time token still works. Before, step-ca signed
// first (spending the token) and the write failed after, as invalid_input.
func TestBootstrapUnwritableDirKeepsToken(t *testing.T) {
	ctx := context.Background()
	c, ott := stationCA(t, "F1-L3-S08")
	file := filepath.Join(t.TempDir(), "not-a-directory")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := stepca.Bootstrap(ctx, c.URL, c.RootFile, ott, filepath.Join(file, "F1-L3-S08"))
	if e, ok := tacerr.As(err); !ok || e.Code != tacerr.OutputFailed || e.Field != "dir" || !strings.Contains(err.Error(), "token is still unused") {
		t.Fatalf("bootstrap into a path under a file: %v; want output_failed on dir saying the token is unused", err)
	}
	cert, err := stepca.Bootstrap(ctx, c.URL, c.RootFile, ott, filepath.Join(t.TempDir(), "F1-L3-S08"))
	if err != nil {
		t.Fatalf("the same token into a good directory: %v\n%s", err, c.Log())
	}
	if cert.Subject.CommonName != "F1-L3-S08" {
		t.Fatalf("certificate for %q", cert.Subject.CommonName)
	}
}

// stationCA starts a development step-ca with a station provisioner
// (certificates for an hour) and makes a one-time token for station.
func stationCA(t *testing.T, station string) (*stepcadev.CA, string) {
	cfg := hsmtest.NewToken(t)
	tok := hsmtest.Open(t, cfg)
	c, opKey := stepcatest.StartStationCA(t, cfg, tok, time.Hour)
	ott, err := stepca.StationToken(c.URL, "tacline-stations", opKey, station, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return c, ott
}
