package revocation_test

import (
	"context"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/ca/castore"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/provisioner/provtest"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
	"github.com/tacline/tacline/verify/revocation"
	"github.com/tacline/tacline/verify/verifytest"
)

func publisher(t *testing.T, env *provtest.Env) *revocation.Publisher {
	t.Helper()
	return newPublisher(t, env, nil)
}

// newPublisher is publisher with a logger.
func newPublisher(t *testing.T, env *provtest.Env, log *slog.Logger) *revocation.Publisher {
	t.Helper()
	issuers, err := revocation.LoadIssuers(context.Background(), env.DB, env.Token.Signer)
	if err != nil {
		t.Fatal(err)
	}
	if len(issuers) != 1 || issuers[0].KeyID != ca.KeyID(env.Issuing) {
		t.Fatalf("issuers %+v", issuers)
	}
	p, err := revocation.NewPublisher(env.DB, issuers, revocation.DefaultConfig(), log)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestChallenges: a nonce is used once; a replay is a conflict, an expired
// or unknown nonce invalid input, all naming the field nonce; purge drops
// expired ones.
func TestChallenges(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		ctx := context.Background()
		env := provtest.New(t, d)
		db := env.DB
		n1, n2 := verifytest.Nonce(t), verifytest.Nonce(t)
		for _, n := range [][]byte{n1, n2} {
			if err := db.InsertChallenge(ctx, n, "test", env.Clock.Now().Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.InsertChallenge(ctx, n1, "test", env.Clock.Now().Add(time.Minute)); !tacerr.Is(err, tacerr.Conflict) {
			t.Fatalf("duplicate nonce: %v", err)
		}
		if err := db.UseChallenge(ctx, n1); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name  string
			nonce []byte
			code  tacerr.Code
			says  string
		}{
			{"replay", n1, tacerr.Conflict, "already used"},
			{"unknown", verifytest.Nonce(t), tacerr.InvalidInput, "not a challenge"},
		} {
			err := db.UseChallenge(ctx, tc.nonce)
			if e, ok := tacerr.As(err); !ok || e.Code != tc.code || e.Field != "nonce" || !strings.Contains(e.Message, tc.says) {
				t.Fatalf("%s: %v", tc.name, err)
			}
		}
		env.Clock.Add(2 * time.Minute)
		err := db.UseChallenge(ctx, n2)
		if e, ok := tacerr.As(err); !ok || e.Code != tacerr.InvalidInput || !strings.Contains(e.Message, "expired") {
			t.Fatalf("expired: %v", err)
		}
		n, err := db.PurgeChallenges(ctx, env.Clock.Now())
		if err != nil || n != 2 {
			t.Fatalf("purge: %d %v", n, err)
		}
	})
}

// TestCRLNumbers: concurrent callers get distinct, increasing numbers; a
// CRL with a lower number than the published one is not saved.
func TestCRLNumbers(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		ctx := context.Background()
		db := storetest.Open(t, d)
		var mu sync.Mutex
		seen := map[int64]bool{}
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 5 {
					n, err := db.NextCRLNumber(ctx, "k1")
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if seen[n] {
						t.Errorf("CRL number %d handed out twice", n)
					}
					seen[n] = true
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		for i := int64(1); i <= 40; i++ {
			if !seen[i] {
				t.Fatalf("numbers %v: %d missing", seen, i)
			}
		}
		if ok, err := db.SaveCRL(ctx, store.CRLRecord{IssuerKeyID: "k1", Number: 7, DER: []byte{7}}); !ok || err != nil {
			t.Fatalf("save 7: %v %v", ok, err)
		}
		if ok, err := db.SaveCRL(ctx, store.CRLRecord{IssuerKeyID: "k1", Number: 5, DER: []byte{5}}); ok || err != nil {
			t.Fatalf("save 5 after 7: %v %v", ok, err)
		}
		if ok, err := db.SaveCRL(ctx, store.CRLRecord{IssuerKeyID: "k1", Number: 41, DER: []byte{41}}); ok || err != nil {
			t.Fatalf("save a number never handed out: %v %v", ok, err)
		}
		rec, err := db.LatestCRL(ctx, "k1")
		if err != nil || rec == nil || rec.Number != 7 || rec.DER[0] != 7 {
			t.Fatalf("latest: %+v %v", rec, err)
		}
		if rec, err := db.LatestCRL(ctx, "k2"); rec != nil || err != nil {
			t.Fatalf("unknown issuer: %+v %v", rec, err)
		}
	})
}

// TestPublisher: CRLs signed in SoftHSM2 verify under the issuing CA, list
// revoked devices with RFC 5280 reasons, are regenerated after a
// revocation and at half-life only, and OCSP answers good, revoked and
// unknown.
func TestPublisher(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		ctx := context.Background()
		env := provtest.New(t, d)
		p := publisher(t, env)
		p.UseResponderKeys(castore.Keys{Token: env.Token})
		keyID := ca.KeyID(env.Issuing)
		a := verifytest.Provision(t, env, "PUB-A")
		r := verifytest.Provision(t, env, "PUB-R")

		n, err := p.Refresh(ctx)
		if err != nil || n != 1 {
			t.Fatalf("first refresh published %d: %v", n, err)
		}
		if n, err := p.Refresh(ctx); err != nil || n != 0 {
			t.Fatalf("refresh of a fresh CRL published %d: %v", n, err)
		}
		if err := env.Service.Revoke(ctx, provisioner.RevokeInput{Actor: provtest.Operator, DeviceSerial: "PUB-R", Reason: "cloned"}); err != nil {
			t.Fatal(err)
		}
		env.Clock.Add(time.Second)
		if n, err := p.Refresh(ctx); err != nil || n != 1 {
			t.Fatalf("refresh after a revocation published %d: %v", n, err)
		}
		rec, err := p.CRL(ctx, keyID)
		if err != nil {
			t.Fatal(err)
		}
		crl, err := x509.ParseRevocationList(rec.DER)
		if err != nil {
			t.Fatal(err)
		}
		if err := crl.CheckSignatureFrom(env.Issuing); err != nil {
			t.Fatalf("CRL signature: %v", err)
		}
		if crl.Number.Int64() != 2 || len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Cmp(r.Issued.Certificate.SerialNumber) != 0 ||
			crl.RevokedCertificateEntries[0].ReasonCode != 1 || !crl.NextUpdate.Equal(crl.ThisUpdate.Add(24*time.Hour)) {
			t.Fatalf("CRL %v with %+v, %v..%v", crl.Number, crl.RevokedCertificateEntries, crl.ThisUpdate, crl.NextUpdate)
		}
		// Half-life: a new CRL before nextUpdate.
		env.Clock.Add(12*time.Hour + time.Second)
		if n, err := p.Refresh(ctx); err != nil || n != 1 {
			t.Fatalf("refresh at half-life published %d: %v", n, err)
		}
		dir := t.TempDir()
		recs, err := p.WriteAll(ctx, dir)
		if err != nil || len(recs) != 1 || recs[0].Number != 4 {
			t.Fatalf("WriteAll: %+v %v", recs, err)
		}
		if der, err := os.ReadFile(filepath.Join(dir, keyID+".crl")); err != nil || string(der) != string(recs[0].DER) {
			t.Fatalf("written CRL: %v", err)
		}
		if _, err := p.CRL(ctx, "nope"); !tacerr.Is(err, tacerr.NotFound) {
			t.Fatalf("unknown issuer: %v", err)
		}

		// OCSP.
		other := verifytest.NewLookAlike(t, env.Root, env.Issuing)
		for _, tc := range []struct {
			name   string
			cert   *x509.Certificate
			issuer *x509.Certificate
			want   int
		}{
			{"good", a.Issued.Certificate, env.Issuing, ocsp.Good},
			{"revoked", r.Issued.Certificate, env.Issuing, ocsp.Revoked},
			{"never issued", other.Copy(t, a.Issued.Certificate, &verifytest.NewKey(t).PublicKey)[0], env.Issuing, ocsp.Unknown},
		} {
			t.Run(tc.name, func(t *testing.T) {
				req, err := ocsp.CreateRequest(tc.cert, tc.issuer, nil)
				if err != nil {
					t.Fatal(err)
				}
				if tc.name == "never issued" {
					// A serial the ledger never issued, named under our issuer.
					tc.cert.SerialNumber.Add(tc.cert.SerialNumber, tc.cert.SerialNumber)
					if req, err = ocsp.CreateRequest(tc.cert, tc.issuer, nil); err != nil {
						t.Fatal(err)
					}
				}
				ans, err := p.RespondOCSP(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				resp, err := ocsp.ParseResponseForCert(ans.DER, tc.cert, env.Issuing)
				if err != nil {
					t.Fatalf("response does not verify: %v", err)
				}
				if resp.Status != tc.want {
					t.Fatalf("status %d, want %d", resp.Status, tc.want)
				}
				if tc.want == ocsp.Revoked && (resp.RevocationReason != ocsp.KeyCompromise || resp.RevokedAt.IsZero()) {
					t.Fatalf("revoked: reason %d at %v", resp.RevocationReason, resp.RevokedAt)
				}
			})
		}
		// An issuer that is not ours, and a malformed request.
		req, err := ocsp.CreateRequest(a.Issued.Certificate, other.Issuing, nil)
		if err != nil {
			t.Fatal(err)
		}
		if ans, err := p.RespondOCSP(ctx, req); err != nil || string(ans.DER) != string(revocation.UnauthorizedOCSP) {
			t.Fatalf("foreign issuer: %x %v", ans.DER, err)
		}
		if ans, err := p.RespondOCSP(ctx, []byte("junk")); !tacerr.Is(err, tacerr.InvalidInput) || string(ans.DER) != string(revocation.MalformedOCSP) {
			t.Fatalf("malformed: %x %v", ans.DER, err)
		}
	})
}

// TestConfig: every wrong field is named.
func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mut   func(c *revocation.Config)
		field string
	}{
		{"next update short", func(c *revocation.Config) { c.NextUpdate = time.Second }, "revocation.next_update"},
		{"debounce negative", func(c *revocation.Config) { c.Debounce = -1 }, "revocation.debounce"},
		{"poll zero", func(c *revocation.Config) { c.Poll = 0 }, "revocation.poll"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := revocation.DefaultConfig()
			tc.mut(&c)
			if e, ok := tacerr.As(c.Validate()); !ok || e.Field != tc.field {
				t.Fatalf("%v, want field %s", c.Validate(), tc.field)
			}
		})
	}
	if err := revocation.DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestCRLWrongKeyNotSigned: an issuer whose HSM key is not its
// certificate's key (a label that names another key after a rotation or a
// restore: a real HSM key, another one) signs no CRL: Publish answers
// hsm_key_not_found and nothing is stored or served. Go's
// CreateRevocationList checks the signature under the signer's own key
// only, so such a CRL, which relying parties reject, was published.
func TestCRLWrongKeyNotSigned(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		ctx := context.Background()
		env := provtest.New(t, d)
		other, err := castore.Keys{Token: env.Token}.GenerateKey("other", "P-256")
		if err != nil {
			t.Fatal(err)
		}
		keyID := ca.KeyID(env.Issuing)
		p, err := revocation.NewPublisher(env.DB, []revocation.Issuer{{KeyID: keyID, Cert: env.Issuing, Signer: other}}, revocation.DefaultConfig(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if rec, err := p.Publish(ctx, keyID); !tacerr.Is(err, tacerr.HSMKeyNotFound) || rec != nil {
			t.Fatalf("Publish with another key than the issuer's: CRL made %v, err %v; want hsm_key_not_found and no CRL", rec != nil, err)
		}
		if rec, err := env.DB.LatestCRL(ctx, keyID); err != nil || rec != nil {
			t.Fatalf("stored CRL %+v, %v; want none", rec, err)
		}
	})
}

// TestCRLStaleRequestsPublishOnce: requests that find the CRL past half
// its life at the same time (the public CRL endpoint) publish one CRL
// between them; before, each waited for the publisher's lock and then
// signed and numbered one more (8 requests, 8 CRLs).
func TestCRLStaleRequestsPublishOnce(t *testing.T) {
	ctx := context.Background()
	env := provtest.New(t, store.SQLite)
	p := publisher(t, env)
	keyID := ca.KeyID(env.Issuing)
	first, err := p.CRL(ctx, keyID)
	if err != nil {
		t.Fatal(err)
	}
	env.Clock.Add(12*time.Hour + time.Second) // past half-life

	const n = 8
	var waiting sync.WaitGroup
	waiting.Add(n)
	defer revocation.SetBeforeCRLLock(waiting.Done)()
	unlock := p.Lock()
	got := make(chan *store.CRLRecord, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			rec, err := p.CRL(ctx, keyID)
			errs <- err
			got <- rec
		}()
	}
	waiting.Wait() // every request found the CRL stale and waits for the lock
	unlock()
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		if rec := <-got; rec.Number != first.Number+1 {
			t.Fatalf("a request got CRL number %d, want %d (one CRL published for all)", rec.Number, first.Number+1)
		}
	}
	latest, err := env.DB.LatestCRL(ctx, keyID)
	if err != nil || latest.Number != first.Number+1 {
		t.Fatalf("latest CRL %+v, %v: want number %d", latest, err, first.Number+1)
	}
}
