package castore_test

import (
	"context"
	"testing"
	"time"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/ca/castore"
	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/hsm/hsmtest"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// TestCeremonyDecidesBeforeKeys: the development ceremony is refused
// before it makes a key or records a CA when the ledger holds a ceremony
// already (run on a new token, it recorded a second device root, made it
// the active root, left the old device issuer active and said the new one
// was) or the token holds a key under one of its labels (it made and
// recorded half a hierarchy, then stopped).
func TestCeremonyDecidesBeforeKeys(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		ctx := context.Background()
		now := time.Now()
		db := storetest.Open(t, d)
		if _, err := castore.InitDev(ctx, db, hsmtest.Open(t, hsmtest.NewToken(t)), "Acme Devices", "P-256", "test", now, ca.NoExpiry); err != nil {
			t.Fatal(err)
		}
		before, err := db.Issuers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			run  func(tok *hsm.Token) error
		}{
			{"ca init --dev", func(tok *hsm.Token) error {
				_, err := castore.InitDev(ctx, db, tok, "Acme Devices", "P-256", "test", now, ca.NoExpiry)
				return err
			}},
			{"ca init --infra", func(tok *hsm.Token) error {
				_, err := castore.InitInfra(ctx, db, tok, "Acme Devices", "P-256", "test", now)
				return err
			}},
		} {
			t.Run(tc.name+" on a ledger with a ceremony", func(t *testing.T) {
				tok := hsmtest.Open(t, hsmtest.NewToken(t))
				if err := tc.run(tok); !tacerr.Is(err, tacerr.Conflict) {
					t.Fatalf("%v, want conflict", err)
				}
				if keys, err := tok.Keys(); err != nil || len(keys) != 0 {
					t.Fatalf("keys made on the new token: %v (%v)", keys, err)
				}
				if after, err := db.Issuers(ctx); err != nil || len(after) != len(before) {
					t.Fatalf("%d issuers recorded after the refusal, want %d (%v)", len(after), len(before), err)
				}
			})
		}

		t.Run("a token with a key under a ceremony label", func(t *testing.T) {
			fresh := storetest.Open(t, d)
			tok := hsmtest.Open(t, hsmtest.NewToken(t))
			if _, err := tok.GenerateKey(castore.InfraRootLabel, hsm.ECP256); err != nil {
				t.Fatal(err)
			}
			_, err := castore.InitDev(ctx, fresh, tok, "Acme Devices", "P-256", "test", now, ca.NoExpiry)
			if e, ok := tacerr.As(err); !ok || e.Code != tacerr.Conflict || e.Field != "label" {
				t.Fatalf("%v, want conflict naming the label", err)
			}
			if keys, err := tok.Keys(); err != nil || len(keys) != 1 {
				t.Fatalf("keys on the token after the refusal: %v (%v), want the one that was there", keys, err)
			}
			if recs, err := fresh.Issuers(ctx); err != nil || len(recs) != 0 {
				t.Fatalf("issuers recorded after the refusal: %d (%v)", len(recs), err)
			}
		})
	})
}

// TestCeremonyLabelTaken: a label an issuer of the ledger has (of any
// kind) is refused by `ca init` (offline) and `ca rotate --dev` before a
// key is made under it: the certificate an offline root would sign for
// that key could never be imported (the ledger's labels are unique), so
// the root's ceremony was spent for nothing.
func TestCeremonyLabelTaken(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		ctx := context.Background()
		now := time.Now()
		db := storetest.Open(t, d)
		dev, err := castore.InitDev(ctx, db, hsmtest.Open(t, hsmtest.NewToken(t)), "Acme Devices", "P-256", "test", now, ca.NoExpiry)
		if err != nil {
			t.Fatal(err)
		}
		issuers := castore.Issuers{DB: db, Kind: store.IssuerDevice, Actor: "test"}
		for _, label := range []string{castore.IssuerLabel, castore.StationCALabel} {
			t.Run(label, func(t *testing.T) {
				tok := hsmtest.Open(t, hsmtest.NewToken(t)) // a new HSM: the label is free there
				o := ca.CeremonyOptions{IssuerLabel: label, Organization: "Acme Devices", Now: now}
				_, err := ca.InitOffline(ctx, issuers, castore.Keys{Token: tok}, o)
				if e, ok := tacerr.As(err); !ok || e.Code != tacerr.Conflict || e.Field != "label" {
					t.Fatalf("ca init --label %s: %v, want conflict naming the label", label, err)
				}
				_, _, err = ca.RotateDev(ctx, issuers, castore.Keys{Token: tok}, dev.Root, dev.RootSigner, o)
				if e, ok := tacerr.As(err); !ok || e.Code != tacerr.Conflict || e.Field != "label" {
					t.Fatalf("ca rotate --dev --label %s: %v, want conflict naming the label", label, err)
				}
				if keys, err := tok.Keys(); err != nil || len(keys) != 0 {
					t.Fatalf("keys made: %v (%v), want none", keys, err)
				}
			})
		}
	})
}
