package server_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/ca/castore"
	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/server"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// softKeys is a ca.KeyGenerator whose keys live outside the HSM: an
// issuer made with it has no key in the token (the key is "missing").
// With tok set it also makes an HSM key under the label, so that the
// label exists but does not hold the certified key.
type softKeys struct{ tok *hsm.Token }

func (k softKeys) GenerateKey(label, _ string) (crypto.Signer, error) {
	if k.tok != nil {
		if _, err := k.tok.GenerateKey(label, hsm.ECP256); err != nil {
			return nil, err
		}
	}
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// TestIssuerRefreshInProcess: a running in-process server (SQLite) keeps
// serving under its issuer when the ledger activates an issuer whose key is
// missing in the HSM or whose certificate does not match the HSM key
// (logged, counted in the metrics, retried), and switches by itself, at its
// provisioning.issuer_refresh poll, to an issuer made by the development
// rotation; the old issuer stays loaded for replays and CRLs.
func TestIssuerRefreshInProcess(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env, err := devenv.Setup(ctx, devenv.Options{Dir: filepath.Join(t.TempDir(), "env"), Stations: 1})
	if err != nil {
		t.Fatal(err)
	}
	env.Config.Provisioning.IssuerRefresh = 100 * time.Millisecond
	srv, url := serve(ctx, t, env)
	first := srv.Issuers()
	if first.Active == "" || first.Active != first.LedgerActive || len(first.Loaded) != 1 || len(first.Unusable) != 0 {
		t.Fatalf("issuers at start-up: %+v", first)
	}
	creds, err := factory.LoadCreds(env.CredsDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	sc := creds.Stations[0]
	client, err := factory.NewClient(factory.ClientConfig{ServerURL: url, CertFile: sc.CertFile, KeyFile: sc.KeyFile, CAFile: creds.ServerCAFile})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	n := 0
	provision := func() (wire.ProvisionRequest, *wire.ProvisionResponse) {
		t.Helper()
		n++
		req := deviceRequest(t, fmt.Sprintf("ROT-%03d", n), sc)
		resp, err := client.Provision(ctx, req)
		if err != nil {
			t.Fatalf("provision %s: %v", req.DeviceSerial, err)
		}
		return req, resp
	}
	before, beforeResp := provision()
	if got := issuerOf(t, beforeResp); got != first.Active {
		t.Fatalf("first device issued under %s, want %s", got, first.Active)
	}

	// The ledger's rows are changed by another handle, as another process
	// (`tacline ca ...`) would; the HSM keys through the server's token.
	db, err := server.OpenLedger(ctx, env.Config)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	root, _, rootSigner, err := castore.ActiveCA(ctx, db, srv.Token, store.IssuerRoot)
	if err != nil {
		t.Fatal(err)
	}
	devIssuers := castore.Issuers{DB: db, Kind: store.IssuerDevice, Actor: "test"}
	admin, err := devenv.RoleClient(env, "operator")
	if err != nil {
		t.Fatal(err)
	}
	opts := func(label string) ca.CeremonyOptions {
		return ca.CeremonyOptions{IssuerLabel: label, Organization: devenv.Manufacturer, Now: time.Now()}
	}

	for _, tc := range []struct {
		name, label string
		keys        ca.KeyGenerator
		why         string
		code        tacerr.Code
	}{
		{"key missing in the HSM", "tacline-device-ca-missing", softKeys{}, "no key pair labelled", tacerr.HSMKeyNotFound},
		{"certificate not matching the HSM key", "tacline-device-ca-mismatch", softKeys{tok: srv.Token}, "does not match", tacerr.InvalidConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, _, err := ca.RotateDev(ctx, devIssuers, tc.keys, root, rootSigner, opts(tc.label))
			if err != nil {
				t.Fatal(err)
			}
			// Twice: the first refresh meets the new issuer, the second
			// retries it (an active issuer that failed is retried each time).
			for range 2 {
				if _, err := srv.RefreshIssuers(ctx); err != nil {
					t.Fatalf("refresh with an unusable active issuer: %v", err)
				}
			}
			st := srv.Issuers()
			if st.Active != first.Active || st.LedgerActive != rec.KeyID {
				t.Fatalf("after activating %s: %+v, want still issuing under %s", rec.KeyID, st, first.Active)
			}
			if why := st.Unusable[rec.KeyID]; why == nil || !contains(why.Error(), tc.why) || tacerr.CodeOf(why) != tc.code {
				t.Fatalf("unusable issuers %v: want %s with %q, code %s", st.Unusable, rec.KeyID, tc.why, tc.code)
			}
			// The console's overview shows the code, not internal.
			overview, err := admin.Get(url + "/console/")
			if err != nil {
				t.Fatal(err)
			}
			page, _ := io.ReadAll(overview.Body)
			overview.Body.Close()
			if !strings.Contains(string(page), "unusable: ") || !strings.Contains(string(page), string(tc.code)) {
				t.Fatalf("console overview (%s) does not show issuer %s unusable with code %s:\n%s", overview.Status, rec.KeyID, tc.code, page)
			}
			if v := metricValue(t, srv.Registry, "tacline_device_issuer_behind"); v != 1 {
				t.Errorf("tacline_device_issuer_behind = %v, want 1", v)
			}
			_, resp := provision()
			if got := issuerOf(t, resp); got != first.Active {
				t.Fatalf("device issued under %s while the ledger's active issuer is unusable, want %s", got, first.Active)
			}
		})
	}
	if v := metricValue(t, srv.Registry, "tacline_device_issuers_unusable"); v != 2 {
		t.Errorf("tacline_device_issuers_unusable = %v, want 2", v)
	}

	// A real rotation (keys in the HSM): the poll picks it up by itself.
	rec, _, err := ca.RotateDev(ctx, devIssuers, castore.Keys{Token: srv.Token}, root, rootSigner, opts("tacline-device-ca-2"))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for srv.Issuers().Active != rec.KeyID {
		if time.Now().After(deadline) {
			t.Fatalf("the server did not switch to %s within 30s: %+v", rec.KeyID, srv.Issuers())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if v := metricValue(t, srv.Registry, "tacline_device_issuer_behind"); v != 0 {
		t.Errorf("tacline_device_issuer_behind = %v after the switch, want 0", v)
	}
	if v := metricValue(t, srv.Registry, "tacline_device_issuers_loaded"); v != 2 {
		t.Errorf("tacline_device_issuers_loaded = %v, want 2 (old and new)", v)
	}
	_, after := provision()
	if got := issuerOf(t, after); got != rec.KeyID {
		t.Fatalf("device after the switch issued under %s, want %s", got, rec.KeyID)
	}
	// The replay of a request from before the rotation: the original
	// certificate and the old chain.
	replayed, err := client.Provision(ctx, before)
	if err != nil {
		t.Fatalf("replay of %s: %v", before.RequestID, err)
	}
	if replayed.Certificate != beforeResp.Certificate || replayed.Chain != beforeResp.Chain {
		t.Fatalf("replay of %s after the rotation answered another certificate or chain", before.RequestID)
	}
	// CRLs of both issuers are signed by their own keys.
	for _, keyID := range []string{first.Active, rec.KeyID} {
		crl, err := srv.Authority.CRL(ctx, keyID)
		if err != nil {
			t.Fatalf("CRL of %s: %v", keyID, err)
		}
		l, err := x509.ParseRevocationList(crl.DER)
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(l.AuthorityKeyId); got != keyID {
			t.Errorf("CRL of %s names authority key %s", keyID, got)
		}
	}
}

// issuerOf checks that the response's certificate is signed by the first
// certificate of its chain and returns that issuer's key id.
func issuerOf(t *testing.T, resp *wire.ProvisionResponse) string {
	t.Helper()
	cert := parsePEM(t, resp.Certificate)
	issuer := parsePEM(t, resp.Chain)
	if err := cert.CheckSignatureFrom(issuer); err != nil {
		t.Fatalf("certificate %s is not signed by the first certificate of its chain: %v", resp.CertificateSerial, err)
	}
	if hex.EncodeToString(cert.AuthorityKeyId) != ca.KeyID(issuer) {
		t.Fatalf("certificate %s: authority key id %x, chain's issuer %s", resp.CertificateSerial, cert.AuthorityKeyId, ca.KeyID(issuer))
	}
	return ca.KeyID(issuer)
}

func parsePEM(t *testing.T, s string) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		t.Fatalf("no PEM block in %q", s)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
