package api

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/tacerr"
)

const testCSR = "-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n"

// TestTLSHandshake: a certificate from a CA the server does not trust, or
// an expired one, gets a 401 naming the cause; TLS 1.1 is refused; TLS 1.3
// is negotiated.
func TestTLSHandshake(t *testing.T) {
	pki := newPKI(t)
	fake := newFake(t, pki)
	ts := startServer(t, pki, fake, nil)
	stranger := newPKI(t) // another root and station CA, not configured
	cert := stranger.clientCert(t, ca.Station{Roles: []string{"admin"}})
	expiredLeaf, expiredKey, err := ca.StationCert(pki.stationCA, pki.stationKey, nil, ca.Station{ID: "OLD", Roles: []string{"admin"}},
		ca.Validity{NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	expired := tls.Certificate{Certificate: [][]byte{expiredLeaf.Raw}, PrivateKey: expiredKey, Leaf: expiredLeaf}
	for _, tc := range []struct {
		name string
		cert tls.Certificate
		want string
	}{
		{"untrusted CA", cert, "which this server does not trust"},
		{"expired", expired, "expired at"},
	} {
		resp, err := ts.client(&tc.cert).Get(ts.url + "/v1/pools")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), tc.want) {
			t.Fatalf("%s certificate: %d %s, want 401 naming %q", tc.name, resp.StatusCode, body, tc.want)
		}
	}

	oldTLS := ts.transport(nil)
	oldTLS.TLSClientConfig.MaxVersion = tls.VersionTLS11
	oldTLS.TLSClientConfig.MinVersion = tls.VersionTLS10
	if _, err := (&http.Client{Transport: oldTLS}).Get(ts.url + "/healthz"); err == nil {
		t.Fatal("TLS 1.1 was accepted")
	}

	resp, err := ts.client(nil).Get(ts.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS.Version != tls.VersionTLS13 {
		t.Fatalf("healthz: status %d, TLS version %x; want 200 over TLS 1.3", resp.StatusCode, resp.TLS.Version)
	}
}

// TestIdentityErrors covers identities the server refuses.
func TestIdentityErrors(t *testing.T) {
	pki := newPKI(t)
	id := newIdentifier([]*x509.Certificate{pki.stationCA}, []IdentityRule{{CN: "two", Station: "OTHER"}})
	chain := func(c tls.Certificate) *tls.ConnectionState {
		return &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{c.Leaf, pki.stationCA, pki.root}}}
	}
	tests := []struct {
		name string
		cs   *tls.ConnectionState
		want string
	}{
		{"no certificate", &tls.ConnectionState{}, "client certificate issued by a CA"},
		{"nil state (plain HTTP)", nil, "client certificate issued by a CA"},
		{"two stations", chain(pki.clientCert(t, ca.Station{ID: "ONE", Roles: []string{"operator"}})), ""},
		{"unknown role only", chain(pki.clientCert(t, ca.Station{Roles: []string{"janitor"}})), "carries no tacline identity"},
	}
	// The "two stations" certificate: CN is the station id ONE, and the
	// rule maps CN "two"; make it collide by mapping CN ONE instead.
	id.rules = []IdentityRule{{CN: "ONE", Station: "OTHER"}}
	tests[2].want = "names two stations"
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := id.identify(tc.cs)
			if !tacerr.Is(err, tacerr.Unauthorized) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want unauthorized containing %q", err, tc.want)
			}
		})
	}
}
