package api

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"strings"
	"testing"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/tacerr"
)

const testCSR = "-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n"

// TestTLSHandshake: a certificate from a CA the server does not trust
// fails the TLS handshake; TLS 1.1 is refused; TLS 1.3 is negotiated.
func TestTLSHandshake(t *testing.T) {
	pki := newPKI(t)
	fake := newFake(t, pki)
	ts := startServer(t, pki, fake, nil)
	stranger := newPKI(t) // another root and station CA, not configured
	cert := stranger.clientCert(t, ca.Station{Roles: []string{"admin"}})
	if _, err := ts.client(&cert).Get(ts.url + "/v1/pools"); err == nil {
		t.Fatal("a certificate from an untrusted CA was accepted")
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
