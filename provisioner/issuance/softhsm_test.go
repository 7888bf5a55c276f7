package issuance

import (
	"crypto"
	"testing"

	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/hsm/hsmtest"
)

// hsmSigners makes the root and issuing keys inside a fresh SoftHSM2 token
// and returns their signers.
func hsmSigners(t testing.TB, kt hsm.KeyType) (root, issuing crypto.Signer) {
	t.Helper()
	tok := hsmtest.Open(t, hsmtest.NewToken(t))
	for _, label := range []string{"root", "issuing"} {
		if _, err := tok.GenerateKey(label, kt); err != nil {
			t.Fatal(err)
		}
	}
	root, err := tok.Signer("root")
	if err != nil {
		t.Fatal(err)
	}
	issuing, err = tok.Signer("issuing")
	if err != nil {
		t.Fatal(err)
	}
	return root, issuing
}

// TestIssueSoftHSM issues with CA keys that live in a real SoftHSM2 token
// (through PKCS#11) and checks the result like the software-key tests do,
// including with openssl.
func TestIssueSoftHSM(t *testing.T) {
	tests := []struct {
		name string
		kt   hsm.KeyType
	}{
		{name: "P-256", kt: hsm.ECP256},
		{name: "P-384", kt: hsm.ECP384},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, issuing := hsmSigners(t, tc.kt)
			p := newPKI(t, root, issuing)
			is := p.issuer(t, DefaultLintConfig())
			req := testRequest(t)
			tok, cert := issueChecked(t, is, p, req)
			opensslCheck(t, p, cert, req)
			if _, _, err := is.Issue(tok); err == nil {
				t.Fatal("second Issue with the same token succeeded")
			}
		})
	}
}
