// Package provtest builds a complete, real provisioning environment for
// tests: a fresh SoftHSM2 token holding the root, device issuing CA and
// station CA keys, a ledger (SQLite or PostgreSQL) with a test TAC, pools
// and two enrolled stations, and a provisioner.Service over them.
package provtest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/ca/castore"
	"github.com/tacline/tacline/catalog"
	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/hsm/hsmtest"
	"github.com/tacline/tacline/policy"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/provisioner/issuance"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// Test catalogue: TACs under the test reporting body 00.
const (
	TAC          = 100100 // "00100100": 2 IMEIs per device, approved for DE
	TACSingle    = 100101 // "00100101": 1 IMEI per device, approved for DE
	TACUnapprov  = 100102 // "00100102": approved for FR only
	Manufacturer = "Tacline Test Devices"
)

// Env is a ready provisioning environment.
type Env struct {
	DB         *store.DB
	Token      *hsm.Token
	Service    *provisioner.Service
	Root       *x509.Certificate
	Issuing    *x509.Certificate
	Issuer     *issuance.Issuer
	StationCA  *x509.Certificate
	StationKey crypto.Signer // the station CA key (in the HSM)
	Roots      *x509.CertPool
	Clock      *Clock
}

// Clock is a settable clock for tests.
type Clock struct{ t time.Time }

// Now returns the clock's time.
func (c *Clock) Now() time.Time { return c.t }

// Add moves the clock.
func (c *Clock) Add(d time.Duration) { c.t = c.t.Add(d) }

// Actor returns the actor of an enrolled station, with the scope the API
// gives a station (objects of its own factory).
func Actor(station string) provisioner.Actor {
	return provisioner.Actor{ID: station, Station: station, Roles: []provisioner.Role{provisioner.RoleStation}, Scope: provisioner.ScopeFactory}
}

// Operator is an operator actor (every object).
var Operator = provisioner.Actor{ID: "op@example", Roles: []provisioner.Role{provisioner.RoleOperator}, Scope: provisioner.ScopeAll}

// New builds an Env on the given ledger dialect. Stations: S1 (pools F1-A
// for product EX-1 on TAC 00100100, F1-S for product EX-S on 00100101), S2
// (pool F2-B, product EX-1, same TAC), S3 (pool F3-X on the TAC approved for
// FR only, but the pool targets DE).
func New(t testing.TB, d store.Dialect, opts ...Option) *Env {
	t.Helper()
	var o options
	for _, f := range opts {
		f(&o)
	}
	ctx := context.Background()
	clock := &Clock{t: time.Now().UTC().Truncate(time.Second)}
	tok := hsmtest.Open(t, hsmtest.NewToken(t))
	db := storetest.Open(t, d)
	db.SetClock(clock.Now)
	cer, err := ca.InitDev(ctx, castore.Issuers{DB: db, Kind: store.IssuerDevice, Actor: "test"}, castore.Keys{Token: tok},
		ca.CeremonyOptions{RootLabel: "root", IssuerLabel: "issuing-1", Organization: Manufacturer, Now: clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := tok.Signer("issuing-1")
	if err != nil {
		t.Fatal(err)
	}
	if o.wrap != nil {
		signer = o.wrap(signer)
	}
	iss, err := issuance.New(issuance.Config{IssuerCert: cer.Issuing, Chain: []*x509.Certificate{cer.Root}, Signer: signer,
		Profile: policy.DefaultProfile(), Lint: issuance.DefaultLintConfig()})
	if err != nil {
		t.Fatal(err)
	}
	stKey, err := castore.Keys{Token: tok}.GenerateKey("station-ca", "P-256")
	if err != nil {
		t.Fatal(err)
	}
	// Stations chain to an infrastructure root of their own, never to the
	// device root (as `tacline ca init --dev` does).
	infraKey, err := castore.Keys{Token: tok}.GenerateKey("infra-root", "P-256")
	if err != nil {
		t.Fatal(err)
	}
	infra, err := ca.SelfSignedRoot(infraKey, pkix.Name{Organization: []string{Manufacturer}, CommonName: "Test Infrastructure Root"}, ca.ValidFor(clock.Now(), 20*365*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	stCA, err := ca.StationCA(infra, infraKey, stKey.Public(), pkix.Name{Organization: []string{Manufacturer}, CommonName: "Test Station CA"},
		ca.ValidFor(clock.Now(), 10*365*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	alloc := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	de := []catalog.Approval{{Market: "DE", Reference: "DE-1", ValidFrom: alloc}}
	tacs := []catalog.TAC{
		{TAC: TAC, Brand: Manufacturer, ModelName: "EX-1", DeviceType: "Smartphone", RadioInterfaces: []string{"LTE", "NR"}, IMEIsPerDevice: 2, AllocationDate: alloc, Approvals: de},
		{TAC: TACSingle, Brand: Manufacturer, ModelName: "EX-S", DeviceType: "Module", RadioInterfaces: []string{"LTE"}, IMEIsPerDevice: 1, AllocationDate: alloc, Approvals: de},
		{TAC: TACUnapprov, Brand: Manufacturer, ModelName: "EX-X", DeviceType: "Module", RadioInterfaces: []string{"LTE"}, IMEIsPerDevice: 1, AllocationDate: alloc,
			Approvals: []catalog.Approval{{Market: "FR", Reference: "FR-1", ValidFrom: alloc}}},
	}
	if err := db.AddTACs(ctx, tacs, "test"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []store.Pool{
		{Name: "F1-A", TAC: TAC, SNRStart: 0, SNREnd: 499999, Factory: "F1", Line: "L1", Product: "EX-1", Market: "DE"},
		{Name: "F1-S", TAC: TACSingle, SNRStart: 0, SNREnd: 999999, Factory: "F1", Line: "L1", Product: "EX-S", Market: "DE"},
		{Name: "F2-B", TAC: TAC, SNRStart: 500000, SNREnd: 999999, Factory: "F2", Line: "L1", Product: "EX-1", Market: "DE"},
		{Name: "F3-X", TAC: TACUnapprov, SNRStart: 0, SNREnd: 999, Factory: "F3", Line: "L1", Product: "EX-X", Market: "DE"},
	} {
		if _, err := db.CreatePool(ctx, p, "test"); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []store.StationRecord{
		{ID: "S1", Factory: "F1", Line: "L1", Pools: []string{"F1-A", "F1-S"}},
		{ID: "S2", Factory: "F2", Line: "L1", Pools: []string{"F2-B"}},
		{ID: "S3", Factory: "F3", Line: "L1", Pools: []string{"F3-X"}},
	} {
		if err := db.EnrollStation(ctx, s, "test"); err != nil {
			t.Fatal(err)
		}
	}
	svc, err := provisioner.New(provisioner.Config{DB: db, Issuers: map[string]*issuance.Issuer{ca.KeyID(cer.Issuing): iss},
		Active: ca.KeyID(cer.Issuing), Manufacturer: Manufacturer, Now: clock.Now, IntentTimeout: 5 * time.Minute,
		SiteLeases: o.site, SiteReady: o.siteReady,
		Probe: func(ctx context.Context) error {
			if h := tok.Health(ctx); !h.OK {
				return &healthErr{h.Err}
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cer.Root)
	return &Env{DB: db, Token: tok, Service: svc, Root: cer.Root, Issuing: cer.Issuing, Issuer: iss, StationCA: stCA,
		StationKey: stKey, Roots: roots, Clock: clock}
}

// Option changes New.
type Option func(*options)

type options struct {
	wrap      func(crypto.Signer) crypto.Signer
	siteReady func() error
	site      bool
}

// WithSiteLeases makes the provisioner a factory site's (docs/sites.md):
// HQ pool names resolve to held leases, gated by ready (nil: always).
func WithSiteLeases(ready func() error) Option {
	return func(o *options) { o.site, o.siteReady = true, ready }
}

// WithSigner wraps the issuing CA's HSM signer, to inject faults the HSM
// cannot produce on demand.
func WithSigner(wrap func(crypto.Signer) crypto.Signer) Option {
	return func(o *options) { o.wrap = wrap }
}

// FaultySigner fails every signature while Down is set, with
// hsm_unavailable: an HSM outage the SoftHSM2 token cannot produce on demand.
type FaultySigner struct {
	crypto.Signer
	Down atomic.Bool
}

// Sign signs with the wrapped signer unless Down is set.
func (f *FaultySigner) Sign(r io.Reader, digest []byte, o crypto.SignerOpts) ([]byte, error) {
	if f.Down.Load() {
		return nil, tacerr.New(tacerr.HSMUnavailable, "injected HSM outage")
	}
	return f.Signer.Sign(r, digest, o)
}

// WithFaultySigner wraps the issuing CA's signer in a FaultySigner, stored
// in *fs.
func WithFaultySigner(fs **FaultySigner) Option {
	return WithSigner(func(s crypto.Signer) crypto.Signer {
		*fs = &FaultySigner{Signer: s}
		return *fs
	})
}

type healthErr struct{ msg string }

func (e *healthErr) Error() string { return "hsm probe failed: " + e.msg }

// Device is a simulated device: a fresh P-256 key and its CSR.
type Device struct {
	Key *ecdsa.PrivateKey
	CSR []byte // PEM
}

// NewDevice makes a device key and CSR.
func NewDevice(t testing.TB) *Device {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return DeviceOf(t, k)
}

// DeviceOf is the device of a given key (e.g. one a broken generator made),
// with its CSR.
func DeviceOf(t testing.TB, k *ecdsa.PrivateKey) *Device {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "device"}}, k)
	if err != nil {
		t.Fatal(err)
	}
	return &Device{Key: k, CSR: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})}
}
