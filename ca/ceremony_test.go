package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/hsm/hsmtest"
	"github.com/tacline/tacline/tacerr"
)

// softGen makes software keys (for the logic tests); hsmGen makes them in a
// real SoftHSM2 token.
type softGen struct {
	mu   sync.Mutex
	keys map[string]crypto.Signer
}

// Signer is the KeySource of the keys made.
func (g *softGen) Signer(label string) (crypto.Signer, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if k := g.keys[label]; k != nil {
		return k, nil
	}
	return nil, tacerr.New(tacerr.HSMKeyNotFound, "no key %q", label)
}

func (g *softGen) GenerateKey(label, curve string) (crypto.Signer, error) {
	c := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384()}[curve]
	if c == nil {
		return nil, fmt.Errorf("curve %q", curve)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.keys == nil {
		g.keys = map[string]crypto.Signer{}
	}
	if g.keys[label] != nil {
		return nil, fmt.Errorf("label %q exists", label)
	}
	k, err := ecdsaKey(c)
	g.keys[label] = k
	return k, err
}

type hsmGen struct{ tok *hsm.Token }

func (g hsmGen) GenerateKey(label, curve string) (crypto.Signer, error) {
	kt := map[string]hsm.KeyType{"P-256": hsm.ECP256, "P-384": hsm.ECP384}[curve]
	if _, err := g.tok.GenerateKey(label, kt); err != nil {
		return nil, err
	}
	return g.tok.Signer(label)
}

func opts(label string) CeremonyOptions {
	return CeremonyOptions{RootLabel: "root", IssuerLabel: label, Organization: "Acme Devices", Country: "DE", Now: now}
}

func TestCeremonyDevAndRotate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		gen   func(t *testing.T) KeyGenerator
		curve string
	}{
		{name: "software keys", gen: func(*testing.T) KeyGenerator { return &softGen{} }, curve: "P-384"},
		{name: "SoftHSM2 keys", gen: func(t *testing.T) KeyGenerator { return hsmGen{hsmtest.Open(t, hsmtest.NewToken(t))} }, curve: "P-256"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			store := NewFileStore(filepath.Join(t.TempDir(), "issuers.json"))
			gen := tc.gen(t)
			o := opts("issuing-1")
			o.Curve = tc.curve
			dev, err := InitDev(ctx, store, gen, o)
			if err != nil {
				t.Fatal(err)
			}
			if !dev.Record.Active || dev.Record.Curve != tc.curve || dev.Record.KeyID != KeyID(dev.Issuing) {
				t.Fatalf("record %+v", dev.Record)
			}
			if err := dev.Issuing.CheckSignatureFrom(dev.Root); err != nil {
				t.Fatal(err)
			}
			o2 := opts("issuing-2")
			o2.Curve = tc.curve
			o2.Now = now.Add(time.Hour)
			rec2, iss2, err := RotateDev(ctx, store, gen, dev.Root, dev.RootSigner, o2)
			if err != nil {
				t.Fatal(err)
			}
			list, err := List(ctx, store)
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != 2 || !list[0].Active || list[0].KeyID != rec2.KeyID || list[1].Active || list[1].Label != "issuing-1" {
				t.Fatalf("list after rotate %+v", list)
			}
			active, cert, chain, err := ActiveIssuer(ctx, store)
			if err != nil || active.KeyID != rec2.KeyID || !cert.Equal(iss2) || len(chain) != 1 || !chain[0].Equal(dev.Root) {
				t.Fatalf("active issuer %+v %v", active, err)
			}
			// Rotating back to the first issuer keeps both.
			if err := store.Activate(ctx, dev.Record.KeyID); err != nil {
				t.Fatal(err)
			}
			if a, _, _, _ := ActiveIssuer(ctx, store); a.KeyID != dev.Record.KeyID {
				t.Fatalf("active %s after Activate", a.KeyID)
			}
		})
	}
}

// TestCeremonyOfflineImport: the issuing key makes a CSR, an "offline root"
// signs it, Import checks the result against the HSM key.
func TestCeremonyOfflineImport(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	gen := &softGen{}
	csrPEM, err := InitOffline(ctx, NewFileStore(filepath.Join(t.TempDir(), "issuers.json")), gen, opts("issuing-1"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(csrPEM)
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil || csr.CheckSignature() != nil {
		t.Fatalf("CSR: %v", err)
	}
	offline := newHierarchy(t, elliptic.P256())
	signed, err := IssuingCA(offline.root, offline.rootKey, csr.PublicKey, csr.Subject, ValidFor(now, 24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	signer := gen.keys["issuing-1"]
	// A CA certificate that outlives its root (only a foreign root would
	// sign one: IssuingCA refuses).
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: csr.Subject, NotBefore: now.Add(-time.Hour), NotAfter: NoExpiry,
		BasicConstraintsValid: true, IsCA: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, SubjectKeyId: []byte{1, 2, 3}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, offline.root, csr.PublicKey, offline.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	outliving, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	expired, err := IssuingCA(offline.root, offline.rootKey, csr.PublicKey, csr.Subject, Validity{NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name           string
		signer         crypto.Signer
		cert           []byte
		chain          []byte
		deviceNotAfter time.Time
		errCode        tacerr.Code
		field, msg     string // msg: in the message when field is set ("outlive" when empty)
	}{
		{name: "outlives its root", signer: signer, cert: ChainPEM(outliving), chain: ChainPEM(offline.root), errCode: tacerr.InvalidInput, field: "validity"},
		{name: "ends before the device certificates", signer: signer, cert: ChainPEM(signed), chain: ChainPEM(offline.root), deviceNotAfter: NoExpiry,
			errCode: tacerr.InvalidInput, field: "validity"},
		{name: "certificate for another key", signer: signer, cert: ChainPEM(offline.issuing), chain: ChainPEM(offline.root), errCode: tacerr.InvalidInput},
		{name: "chain to a different root", signer: signer, cert: ChainPEM(signed), chain: ChainPEM(newHierarchy(t, elliptic.P256()).root), errCode: tacerr.InvalidInput},
		{name: "not PEM", signer: signer, cert: []byte("nope"), errCode: tacerr.InvalidInput},
		// Without a chain there is no root to verify against, but the
		// certificate's own validity still holds: an expired (or not yet
		// valid) CA would issue certificates that end before they begin.
		{name: "expired, no chain", signer: signer, cert: ChainPEM(expired), errCode: tacerr.InvalidInput, field: "validity", msg: "is expired"},
		{name: "good, chain in the same file", signer: signer, cert: ChainPEM(signed, offline.root)},
		{name: "same issuer again", signer: signer, cert: ChainPEM(signed), chain: ChainPEM(offline.root), errCode: tacerr.Conflict},
	}
	store := NewFileStore(filepath.Join(t.TempDir(), "issuers.json"))
	for _, tc := range tests { // sequential: the cases share the store
		rec, err := Import(ctx, store, "issuing-1", tc.signer, tc.cert, tc.chain, false, now, tc.deviceNotAfter)
		if tc.errCode != "" {
			if tc.msg == "" {
				tc.msg = "outlive"
			}
			if e, ok := tacerr.As(err); !ok || e.Code != tc.errCode || tc.field != "" && (e.Field != tc.field || !strings.Contains(e.Message, tc.msg)) {
				t.Fatalf("%s: err = %v, want %s", tc.name, err, tc.errCode)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !rec.Active || rec.KeyID != KeyID(signed) || rec.ChainPEM != string(ChainPEM(offline.root)) {
			t.Fatalf("%s: record %+v", tc.name, rec)
		}
	}
	list, _ := store.ListIssuers(ctx)
	if len(list) != 1 {
		t.Fatalf("%d issuers recorded, want 1 (refusals write nothing)", len(list))
	}

	// A second issuer, imported inactive to be activated later: without
	// its chain Activate could never switch to it, so Import refuses it.
	csrPEM, err = InitOffline(ctx, store, gen, opts("issuing-2"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ = pem.Decode(csrPEM)
	if csr, err = x509.ParseCertificateRequest(block.Bytes); err != nil {
		t.Fatal(err)
	}
	second, err := IssuingCA(offline.root, offline.rootKey, csr.PublicKey, csr.Subject, ValidFor(now, 24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Import(ctx, store, "issuing-2", gen.keys["issuing-2"], ChainPEM(second), nil, false, now, time.Time{})
	if e, ok := tacerr.As(err); !ok || e.Code != tacerr.InvalidInput || e.Field != "chain" || !strings.Contains(e.Message, "ca activate") {
		t.Fatalf("inactive import without a chain: %v, want invalid_input (chain)", err)
	}
	rec, err := Import(ctx, store, "issuing-2", gen.keys["issuing-2"], ChainPEM(second), ChainPEM(offline.root), false, now, time.Time{})
	if err != nil || rec.Active {
		t.Fatalf("inactive import with its chain: %+v, %v", rec, err)
	}
	if rec, err = Activate(ctx, store, gen, rec.KeyID, now, time.Time{}); err != nil || !rec.Active {
		t.Fatalf("Activate: %+v, %v", rec, err)
	}
}

func TestCeremonyOptionsRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		mod   func(o *CeremonyOptions)
		field string
	}{
		{name: "no time", mod: func(o *CeremonyOptions) { o.Now = time.Time{} }, field: "now"},
		{name: "P-521", mod: func(o *CeremonyOptions) { o.Curve = "P-521" }, field: "curve"},
		{name: "no organization", mod: func(o *CeremonyOptions) { o.Organization = "" }, field: "organization"},
		{name: "same labels", mod: func(o *CeremonyOptions) { o.IssuerLabel = "root" }, field: "label"},
		{name: "issuing CA ends before the devices", mod: func(o *CeremonyOptions) {
			o.CAValidity, o.DeviceNotAfter = ValidFor(now, 15*365*24*time.Hour), NoExpiry
		}, field: "validity"},
		{name: "issuing CA outlives the root", mod: func(o *CeremonyOptions) { o.RootValidity = ValidFor(now, 365*24*time.Hour) }, field: "validity"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := opts("issuing-1")
			tc.mod(&o)
			store := NewFileStore(filepath.Join(t.TempDir(), "issuers.json"))
			_, err := InitDev(context.Background(), store, &softGen{}, o)
			if e, ok := tacerr.As(err); !ok || e.Field != tc.field {
				t.Fatalf("err = %v, want field %s", err, tc.field)
			}
			if list, _ := store.ListIssuers(context.Background()); len(list) != 0 {
				t.Fatal("a refused ceremony recorded an issuer")
			}
		})
	}
}

func TestFileStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "issuers.json")
	s := NewFileStore(path)
	if list, err := s.ListIssuers(ctx); err != nil || len(list) != 0 {
		t.Fatalf("missing file: %v %v", list, err)
	}
	h := newHierarchy(t, elliptic.P256())
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			errs[i] = s.AddIssuer(ctx, IssuerRecord{Label: fmt.Sprint("k", i), KeyID: fmt.Sprint("id", i), CertPEM: string(ChainPEM(h.issuing)), Active: i == 3})
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	list, err := NewFileStore(path).ListIssuers(ctx) // a fresh handle reads the file
	if err != nil || len(list) != n {
		t.Fatalf("%d records, %v", len(list), err)
	}
	if err := s.AddIssuer(ctx, IssuerRecord{KeyID: "id1", CertPEM: "x"}); !tacerr.Is(err, tacerr.Conflict) {
		t.Fatalf("duplicate key id: %v", err)
	}
	if err := s.Activate(ctx, "id9"); !tacerr.Is(err, tacerr.NotFound) {
		t.Fatalf("unknown key id: %v", err)
	}
	if err := s.AddIssuer(ctx, IssuerRecord{KeyID: "new", CertPEM: "x", Active: true}); err != nil {
		t.Fatal(err)
	}
	list, _ = s.ListIssuers(ctx)
	active := 0
	for _, r := range list {
		if r.Active {
			active++
		}
	}
	if active != 1 || !list[len(list)-1].Active {
		t.Fatalf("%d active issuers after adding an active one", active)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("issuer file mode: %v %v", st, err)
	}
	// A directory that does not exist: the change fails with a code, and
	// nothing is written.
	gone := NewFileStore(filepath.Join(dir, "missing", "issuers.json"))
	if err := gone.AddIssuer(ctx, IssuerRecord{KeyID: "x", CertPEM: "x"}); !tacerr.Is(err, tacerr.Unavailable) {
		t.Fatalf("unwritable issuer file: %v", err)
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ListIssuers(ctx); !tacerr.Is(err, tacerr.InvalidConfig) {
		t.Fatalf("corrupt file: %v", err)
	}
}

func ecdsaKey(c elliptic.Curve) (crypto.Signer, error) {
	return ecdsa.GenerateKey(c, rand.Reader)
}

// lockedGen makes keys whose token then refuses to sign (PIN locked).
type lockedGen struct{}

func (lockedGen) GenerateKey(string, string) (crypto.Signer, error) {
	k, err := ecdsaKey(elliptic.P256())
	return lockedSigner{k}, err
}

// TestCeremonyReportsKeyLeft: a ceremony that fails after making its key
// says that the key is left in the HSM (and keeps the HSM's code), so the
// operator knows the label is spent.
func TestCeremonyReportsKeyLeft(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := NewFileStore(filepath.Join(t.TempDir(), "issuers.json"))
	_, err := InitOffline(ctx, store, lockedGen{}, opts("issuing-1"))
	if !tacerr.Is(err, tacerr.HSMPINLocked) || !strings.Contains(err.Error(), `key "issuing-1" is left in the HSM`) {
		t.Fatalf("CSR refused by the HSM: %v, want hsm_pin_locked saying the key is left", err)
	}
	h := newHierarchy(t, elliptic.P256())
	gen := &softGen{}
	o := opts("issuing-2")
	_, _, err = RotateDev(ctx, store, gen, h.root, h.rootKey, o)
	if e, ok := tacerr.As(err); !ok || e.Field != "validity" || gen.keys["issuing-2"] != nil {
		t.Fatalf("an issuing CA outliving its root: %v, key made %v; want refused (validity) before the key is made", err, gen.keys["issuing-2"] != nil)
	}
	o.CAValidity = ValidFor(now, time.Hour)
	_, _, err = RotateDev(ctx, store, gen, h.root, lockedSigner{h.rootKey}, o)
	if !tacerr.Is(err, tacerr.HSMPINLocked) || !strings.Contains(err.Error(), `key "issuing-2" is left in the HSM`) {
		t.Fatalf("certificate refused by the HSM: %v, want hsm_pin_locked saying the key is left", err)
	}
}
