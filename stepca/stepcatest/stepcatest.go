// Package stepcatest starts a real step-ca for a test (package stepcadev)
// with the intermediate key in the test's SoftHSM2 token, and stops it when
// the test ends.
package stepcatest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"testing"
	"time"

	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/stepca"
	"github.com/tacline/tacline/stepca/stepcadev"
)

// Start starts step-ca with provisioners in a temporary directory; its
// intermediate key is generated in tok (configured by cfg).
func Start(t testing.TB, cfg hsm.Config, tok *hsm.Token, provisioners ...any) *stepcadev.CA {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := stepcadev.Binary(wd, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	c, err := stepcadev.Start(context.Background(), stepcadev.Options{Dir: t.TempDir(), Binary: bin, HSM: cfg, Token: tok, Provisioners: provisioners})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

// RAKeyLabel is the label of tacline's RA key that StartRA makes.
const RAKeyLabel = "tacline-ra"

// DeviceProvisioner is the name of the device provisioner StartRA adds.
const DeviceProvisioner = "tacline-devices"

// RA is a running step-ca that trusts tacline's RA key (made in the same
// token) through the device provisioner.
type RA struct {
	CA     *stepcadev.CA
	Token  *hsm.Token    // the token, open until the test ends
	Key    crypto.Signer // the RA key
	Config stepca.Config // issuer kind stepca's section for this step-ca
	Device stepca.Provisioner
}

// StartRA opens the token of cfg, makes the RA key in it and starts step-ca
// with the device provisioner (DeviceTemplate) and the provisioners extra
// returns for the RA key (extra may be nil).
func StartRA(t testing.TB, cfg hsm.Config, extra func(ra crypto.PublicKey) []any) *RA {
	t.Helper()
	tok, err := hsm.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tok.Close() })
	if _, err := tok.GenerateKey(RAKeyLabel, hsm.ECP256); err != nil {
		t.Fatal(err)
	}
	key, err := tok.Signer(RAKeyLabel)
	if err != nil {
		t.Fatal(err)
	}
	prov, err := stepca.DeviceProvisioner(DeviceProvisioner, key.Public(), "")
	if err != nil {
		t.Fatal(err)
	}
	provs := []any{prov}
	if extra != nil {
		provs = append(provs, extra(key.Public())...)
	}
	c := Start(t, cfg, tok, provs...)
	return &RA{CA: c, Token: tok, Key: key, Device: prov, Config: stepca.Config{URL: c.URL, Root: c.RootFile, IssuerCert: c.IssuerFile,
		Provisioner: DeviceProvisioner, KeyLabel: RAKeyLabel, Timeout: 5 * time.Second}}
}

// StationProvisioner is the name of the station provisioner
// StartStationCA adds.
const StationProvisioner = "tacline-stations"

// StartStationCA starts step-ca (its key in tok) with the station
// provisioner (StationTemplate, certificates valid for life) and returns it
// with the provisioner's key, which makes one-time tokens (StationToken).
func StartStationCA(t testing.TB, cfg hsm.Config, tok *hsm.Token, life time.Duration) (*stepcadev.CA, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	prov, err := stepca.StationProvisioner(StationProvisioner, key.Public(), life)
	if err != nil {
		t.Fatal(err)
	}
	return Start(t, cfg, tok, prov), key
}
