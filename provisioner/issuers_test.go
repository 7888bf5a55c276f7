package provisioner_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/ca/castore"
	"github.com/tacline/tacline/policy"
	"github.com/tacline/tacline/provisioner/issuance"
	"github.com/tacline/tacline/provisioner/provtest"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// hookSigner runs the hook stored last (setHook), once, before its next
// signature: the moment between the intent (committed) and the HSM
// signature of a request in flight.
type hookSigner struct {
	crypto.Signer
	hook atomic.Pointer[func()]
}

func (h *hookSigner) setHook(f func()) { h.hook.Store(&f) }

// hookedEnv is an environment whose issuing CA signs through a hookSigner.
func hookedEnv(t *testing.T, d store.Dialect) (*provtest.Env, *hookSigner) {
	hs := &hookSigner{}
	env := provtest.New(t, d, provtest.WithSigner(func(s crypto.Signer) crypto.Signer {
		hs.Signer = s
		return hs
	}))
	return env, hs
}

func (h *hookSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	if f := h.hook.Swap(nil); f != nil {
		(*f)()
	}
	return h.Signer.Sign(r, d, o)
}

// TestSetIssuersDuringRequest: the active issuer switches (SetIssuers, as
// the server does after `tacline ca rotate`) while a request is between its
// intent and its signature. That request completes under the issuer its
// intent recorded; the next one is issued under the new issuer; a replay of
// the first answers its original certificate and chain.
func TestSetIssuersDuringRequest(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		env, hs := hookedEnv(t, d)
		ctx := context.Background()
		oldKey := ca.KeyID(env.Issuing)
		rootSigner, err := env.Token.Signer("root")
		if err != nil {
			t.Fatal(err)
		}
		rec, newCA, err := ca.RotateDev(ctx, castore.Issuers{DB: env.DB, Kind: store.IssuerDevice, Actor: "test"}, castore.Keys{Token: env.Token},
			env.Root, rootSigner, ca.CeremonyOptions{IssuerLabel: "issuing-2", Organization: provtest.Manufacturer, Now: env.Clock.Now()})
		if err != nil {
			t.Fatal(err)
		}
		newSigner, err := env.Token.Signer("issuing-2")
		if err != nil {
			t.Fatal(err)
		}
		newIss, err := issuance.New(issuance.Config{IssuerCert: newCA, Chain: []*x509.Certificate{env.Root}, Signer: newSigner,
			Profile: policy.DefaultProfile(), Lint: issuance.DefaultLintConfig()})
		if err != nil {
			t.Fatal(err)
		}
		if err := env.Service.SetIssuers(map[string]*issuance.Issuer{oldKey: env.Issuer}, rec.KeyID); !tacerr.Is(err, tacerr.InvalidConfig) {
			t.Fatalf("SetIssuers without the active issuer: %v, want invalid_config", err)
		}
		if env.Service.ActiveKeyID() != oldKey {
			t.Fatalf("a refused SetIssuers changed the active issuer to %s", env.Service.ActiveKeyID())
		}
		hs.setHook(func() {
			if err := env.Service.SetIssuers(map[string]*issuance.Issuer{oldKey: env.Issuer, rec.KeyID: newIss}, rec.KeyID); err != nil {
				t.Error(err)
			}
		})
		dev1 := provtest.NewDevice(t)
		first, err := provision(env, "S1", "r-switch-1", "SN-SW-1", dev1)
		if err != nil {
			t.Fatal(err)
		}
		if env.Service.ActiveKeyID() != rec.KeyID {
			t.Fatalf("the switch did not happen during the request: active %s", env.Service.ActiveKeyID())
		}
		if err := first.Certificate.CheckSignatureFrom(env.Issuing); err != nil {
			t.Fatalf("the request in flight during the switch is not signed by its intent's issuer: %v", err)
		}
		if c, err := env.DB.CertificateBySerial(ctx, first.CertSerial); err != nil || c == nil || c.IssuerKeyID != oldKey {
			t.Fatalf("ledger certificate %s: %+v, %v; want issuer %s", first.CertSerial, c, err, oldKey)
		}
		second, err := provision(env, "S1", "r-switch-2", "SN-SW-2", provtest.NewDevice(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := second.Certificate.CheckSignatureFrom(newCA); err != nil {
			t.Fatalf("the request after the switch is not signed by the new issuer: %v", err)
		}
		if !strings.HasPrefix(second.ChainPEM, string(ca.ChainPEM(newCA))) {
			t.Fatal("the chain after the switch does not start with the new issuing CA")
		}
		replay, err := provision(env, "S1", "r-switch-1", "SN-SW-1", dev1)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(replay.CertDER, first.CertDER) || replay.ChainPEM != first.ChainPEM {
			t.Fatal("the replay after the switch answered another certificate or chain")
		}
	})
}
