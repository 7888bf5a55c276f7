package castore_test

import (
	"context"
	"testing"
	"time"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/ca/castore"
	"github.com/tacline/tacline/hsm/hsmtest"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// crashOnActivate is the ledger's issuers with the process dying before an
// Activate (a narrow fake: the real ledger cannot be stopped between two
// calls on demand).
type crashOnActivate struct{ castore.Issuers }

func (crashOnActivate) Activate(context.Context, string) error {
	return tacerr.New(tacerr.Unavailable, "the process died before activating")
}

// TestRotateIsOneWrite: a development rotation that stops after recording
// the new issuing CA leaves no issuer recorded but inactive (which no
// command could activate: `ca import` refuses a recorded key id): the new
// issuer is recorded active in the same write, on both databases.
func TestRotateIsOneWrite(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		ctx := context.Background()
		tok := hsmtest.Open(t, hsmtest.NewToken(t))
		db := storetest.Open(t, d)
		dev, err := castore.InitDev(ctx, db, tok, "Acme Devices", "P-256", "test", time.Now(), ca.NoExpiry)
		if err != nil {
			t.Fatal(err)
		}
		issuers := crashOnActivate{castore.Issuers{DB: db, Kind: store.IssuerDevice, Actor: "test"}}
		rec, _, err := ca.RotateDev(ctx, issuers, castore.Keys{Token: tok}, dev.Root, dev.RootSigner,
			ca.CeremonyOptions{IssuerLabel: "tacline-device-ca-2", Organization: "Acme Devices", Now: time.Now()})
		if err != nil {
			t.Fatalf("rotate: %v", err)
		}
		active, err := db.ActiveIssuer(ctx, store.IssuerDevice)
		if err != nil || active.KeyID != rec.KeyID || !rec.Active {
			t.Fatalf("active device issuer %s (%v), want the rotated %s", active.KeyID, err, rec.KeyID)
		}
	})
}
