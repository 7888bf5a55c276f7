package castore_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/ca/castore"
	"github.com/tacline/tacline/hsm/hsmtest"
	"github.com/tacline/tacline/lifecycle"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// TestActivate: `ca activate` makes a prepared issuer (imported without
// --activate) the active one, and refuses, with the active issuer
// unchanged, one that is expired, not yet valid, records no chain, does
// not chain to the root it records, is revoked, or whose key is not in
// the HSM (or is another key there); a key id no issuer has is not_found,
// and activating the active issuer again changes nothing. On both
// databases, keys in SoftHSM2.
func TestActivate(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		ctx := context.Background()
		tok := hsmtest.Open(t, hsmtest.NewToken(t))
		other := hsmtest.Open(t, hsmtest.NewToken(t)) // another HSM
		db := storetest.Open(t, d)
		now := time.Now()
		dev, err := castore.InitDev(ctx, db, tok, "Acme Devices", "P-256", "test", now, ca.NoExpiry)
		if err != nil {
			t.Fatal(err)
		}
		issuers := castore.Issuers{DB: db, Kind: store.IssuerDevice, Actor: "test"}
		keys := castore.Keys{Token: tok}
		was, err := db.ActiveIssuer(ctx, store.IssuerDevice)
		if err != nil {
			t.Fatal(err)
		}
		// issuing makes a key labelled label in the token of k and an
		// issuing CA certificate for it from root, valid over v.
		issuing := func(k castore.Keys, label string, root *x509.Certificate, rootSigner crypto.Signer, v ca.Validity) (*x509.Certificate, crypto.Signer) {
			t.Helper()
			s, err := k.GenerateKey(label, "P-256")
			if err != nil {
				t.Fatal(err)
			}
			c, err := ca.IssuingCA(root, rootSigner, s.Public(), pkix.Name{CommonName: "Acme Devices Issuing CA " + label, Organization: []string{"Acme Devices"}}, v)
			if err != nil {
				t.Fatal(err)
			}
			return c, s
		}
		imp := func(label string, signer crypto.Signer, cert *x509.Certificate, chain []*x509.Certificate, at time.Time) ca.IssuerRecord {
			t.Helper()
			var chainPEM []byte
			if len(chain) > 0 {
				chainPEM = ca.ChainPEM(chain...)
			}
			rec, err := ca.Import(ctx, issuers, label, signer, ca.ChainPEM(cert), chainPEM, false, at, time.Time{})
			if err != nil || rec.Active {
				t.Fatalf("import %s: %+v, %v", label, rec, err)
			}
			return rec
		}
		// A prepared issuer, good.
		c, s := issuing(keys, "ca-good", dev.Root, dev.RootSigner, ca.UntilNoExpiry(now))
		good := imp("ca-good", s, c, []*x509.Certificate{dev.Root}, now)
		// Expired: valid for 40 minutes up to 10 minutes ago (imported then).
		c, s = issuing(keys, "ca-expired", dev.Root, dev.RootSigner, ca.Validity{NotBefore: now.Add(-50 * time.Minute), NotAfter: now.Add(-10 * time.Minute)})
		expired := imp("ca-expired", s, c, []*x509.Certificate{dev.Root}, now.Add(-30*time.Minute))
		// Not yet valid: from next month.
		month := now.AddDate(0, 1, 0)
		c, s = issuing(keys, "ca-future", dev.Root, dev.RootSigner, ca.Validity{NotBefore: month, NotAfter: ca.NoExpiry})
		future := imp("ca-future", s, c, []*x509.Certificate{dev.Root}, month.Add(time.Hour))
		// No chain recorded (Import refuses that now; a ledger may hold
		// one recorded before).
		c, _ = issuing(keys, "ca-nochain", dev.Root, dev.RootSigner, ca.UntilNoExpiry(now))
		noChain := ca.IssuerRecord{Label: "ca-nochain", KeyID: ca.KeyID(c), Curve: "P-256", CertPEM: string(ca.ChainPEM(c)), CreatedAt: now}
		if err := issuers.AddIssuer(ctx, noChain); err != nil {
			t.Fatal(err)
		}
		// Recorded with a chain it does not chain to: signed by another
		// root (written as an older version could have, or by hand).
		otherRootKey, err := keys.GenerateKey("other-root", "P-256")
		if err != nil {
			t.Fatal(err)
		}
		otherRoot, err := ca.SelfSignedRoot(otherRootKey, pkix.Name{CommonName: "Other Root"}, ca.UntilNoExpiry(now))
		if err != nil {
			t.Fatal(err)
		}
		c, _ = issuing(keys, "ca-stray", otherRoot, otherRootKey, ca.UntilNoExpiry(now))
		stray := ca.IssuerRecord{Label: "ca-stray", KeyID: ca.KeyID(c), Curve: "P-256", CertPEM: string(ca.ChainPEM(c)), ChainPEM: string(ca.ChainPEM(dev.Root)), CreatedAt: now}
		if err := issuers.AddIssuer(ctx, stray); err != nil {
			t.Fatal(err)
		}
		// Its key in another HSM only.
		c, s = issuing(castore.Keys{Token: other}, "ca-elsewhere", dev.Root, dev.RootSigner, ca.UntilNoExpiry(now))
		elsewhere := imp("ca-elsewhere", s, c, []*x509.Certificate{dev.Root}, now)
		// Under a label whose key in this HSM is another one.
		c, _ = issuing(castore.Keys{Token: other}, "ca-swapped", dev.Root, dev.RootSigner, ca.UntilNoExpiry(now))
		if _, err := keys.GenerateKey("ca-swapped", "P-256"); err != nil {
			t.Fatal(err)
		}
		swapped := ca.IssuerRecord{Label: "ca-swapped", KeyID: ca.KeyID(c), Curve: "P-256", CertPEM: string(ca.ChainPEM(c)), ChainPEM: string(ca.ChainPEM(dev.Root)), CreatedAt: now}
		if err := issuers.AddIssuer(ctx, swapped); err != nil {
			t.Fatal(err)
		}
		// Revoked.
		c, s = issuing(keys, "ca-revoked", dev.Root, dev.RootSigner, ca.UntilNoExpiry(now))
		revoked := imp("ca-revoked", s, c, []*x509.Certificate{dev.Root}, now)
		if err := db.RevokeIssuer(ctx, revoked.KeyID, lifecycle.RevokeSuperseded, "test"); err != nil {
			t.Fatal(err)
		}

		for _, tc := range []struct {
			name, keyID string
			code        tacerr.Code
			msg         string
		}{
			{"unknown", "00ff", tacerr.NotFound, "no device issuer"},
			{"expired", expired.KeyID, tacerr.InvalidState, "is expired"},
			{"not yet valid", future.KeyID, tacerr.InvalidState, "is not yet valid"},
			{"no chain", noChain.KeyID, tacerr.InvalidState, "records no chain"},
			{"not chaining", stray.KeyID, tacerr.InvalidState, "does not chain to"},
			{"key elsewhere", elsewhere.KeyID, tacerr.HSMKeyNotFound, `its key "ca-elsewhere" is not in this HSM`},
			{"another key", swapped.KeyID, tacerr.HSMKeyNotFound, "another key than its certificate's"},
			{"revoked", revoked.KeyID, tacerr.InvalidState, "revoked"},
		} {
			_, err := ca.Activate(ctx, issuers, keys, tc.keyID, time.Now(), time.Time{})
			e, ok := tacerr.As(err)
			if !ok || e.Code != tc.code || e.Field != "key_id" || !strings.Contains(e.Error(), tc.msg) {
				t.Fatalf("%s: %v, want %s (key_id) saying %q", tc.name, err, tc.code, tc.msg)
			}
			if a, err := db.ActiveIssuer(ctx, store.IssuerDevice); err != nil || a.KeyID != was.KeyID {
				t.Fatalf("%s: the active issuer is %s (%v), want %s unchanged", tc.name, a.KeyID, err, was.KeyID)
			}
		}

		rec, err := ca.Activate(ctx, issuers, keys, good.KeyID, time.Now(), time.Time{})
		if err != nil || !rec.Active {
			t.Fatalf("activate a prepared issuer: %+v, %v", rec, err)
		}
		for range 2 { // and again: nothing changes
			if a, err := db.ActiveIssuer(ctx, store.IssuerDevice); err != nil || a.KeyID != good.KeyID {
				t.Fatalf("active issuer %s (%v), want %s", a.KeyID, err, good.KeyID)
			}
			if _, err := ca.Activate(ctx, issuers, keys, good.KeyID, time.Now(), time.Time{}); err != nil {
				t.Fatal(err)
			}
		}
		// The one it replaced can be made active again.
		if _, err := ca.Activate(ctx, issuers, keys, was.KeyID, time.Now(), time.Time{}); err != nil {
			t.Fatal(err)
		}
	})
}
