package provisioner_test

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/policy"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/provisioner/issuance"
	"github.com/tacline/tacline/provisioner/provtest"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// stuckUpstream is an upstream CA (issuance.Upstream) whose signatures time
// out, so that every intent stays pending, and whose revocation of the
// serials in fail keeps failing: the faults step-ca can produce but not on
// demand. It records the serials it revoked.
type stuckUpstream struct {
	mu      sync.Mutex
	fail    map[string]bool
	revoked []string
}

func (u *stuckUpstream) Sign(context.Context, *x509.Certificate, *x509.CertificateRequest, string, []string) ([]byte, error) {
	return nil, errors.New("injected: the upstream CA did not answer in time")
}

func (u *stuckUpstream) Revoke(_ context.Context, serial *big.Int, _ string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := hex.EncodeToString(serial.Bytes())
	if u.fail[s] {
		return errors.New("injected: revocation failed at the upstream CA")
	}
	u.revoked = append(u.revoked, s)
	return nil
}

func (u *stuckUpstream) Health(context.Context) error { return nil }
func (u *stuckUpstream) Unreachable(error) bool       { return false }

// TestRecoveryPagesPastFailingIntents: more intents than recovery reads at
// a time (its page, 3 here for 500) cannot be abandoned because revoking
// their serials at the upstream CA keeps failing; a newer intent can.
// Recovery read only the oldest page, so the newer intent was never
// abandoned (its IMEIs never voided, its device never provisionable again)
// for as long as the old ones failed. Now recovery pages through every
// pending intent in one pass. Stale pre-allocations are paged the same way.
func TestRecoveryPagesPastFailingIntents(t *testing.T) {
	defer provisioner.SetRecoveryPage(3)()
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		env := provtest.New(t, d)
		ctx := context.Background()
		up := &stuckUpstream{fail: map[string]bool{}}
		iss, err := issuance.New(issuance.Config{IssuerCert: env.Issuing, Chain: []*x509.Certificate{env.Root}, Upstream: up,
			Profile: policy.DefaultProfile(), Lint: issuance.DefaultLintConfig()})
		if err != nil {
			t.Fatal(err)
		}
		keyID := ca.KeyID(env.Issuing)
		svc, err := provisioner.New(provisioner.Config{DB: env.DB, Issuers: map[string]*issuance.Issuer{keyID: iss}, Active: keyID,
			Manufacturer: provtest.Manufacturer, Now: env.Clock.Now, IntentTimeout: 5 * time.Minute, PreallocTimeout: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		const failing = 7 // more than two pages
		ids := []string{"rp-0", "rp-1", "rp-2", "rp-3", "rp-4", "rp-5", "rp-6", "rp-7"}
		for i, id := range ids {
			_, err := svc.Provision(ctx, provisioner.ProvisionInput{Actor: provtest.Actor("S1"), RequestID: id, DeviceSerial: "SN-" + id,
				Product: "EX-1", CSR: provtest.NewDevice(t).CSR})
			if err == nil {
				t.Fatalf("%s: the stuck upstream CA signed", id)
			}
			is, err := env.DB.IssuanceByRequestID(ctx, id)
			if err != nil || is == nil || is.State != store.IssuancePending {
				t.Fatalf("%s: intent %+v, %v; want pending", id, is, err)
			}
			if i < failing {
				up.fail[is.CertSerial] = true
			}
			env.Clock.Add(time.Second) // the last intent is the newest
		}
		for i := 0; i < 5; i++ {
			if _, err := svc.Allocate(ctx, provisioner.AllocateInput{Actor: provtest.Actor("S1"), RequestID: "rp-al-" + ids[i], Pool: "F1-A", Count: 1}); err != nil {
				t.Fatal(err)
			}
		}
		env.Clock.Add(2 * time.Hour)
		n, err := svc.Recover(ctx)
		if err != nil {
			t.Fatal(err)
		}
		last, err := env.DB.IssuanceByRequestID(ctx, ids[failing])
		if err != nil || last.State != store.IssuanceAbandoned {
			t.Fatalf("the newest intent after a recovery pass: %s, %v; want abandoned past %d failing older ones", last.State, err, failing)
		}
		for _, id := range ids[:failing] {
			if is, _ := env.DB.IssuanceByRequestID(ctx, id); is.State != store.IssuancePending {
				t.Fatalf("%s is %s; its revocation failed, it must stay pending for the next pass", id, is.State)
			}
		}
		if n != 2+5*2 {
			t.Fatalf("recovery voided %d IMEIs, want %d (the newest intent's 2 and 5 stale pre-allocations of 2)", n, 2+5*2)
		}
		ledgerOK(t, env)
	})
}
