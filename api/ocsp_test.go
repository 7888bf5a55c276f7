package api_test

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
	"golang.org/x/crypto/ocsp"

	"github.com/tacline/tacline/verify"
)

// ocspRequestWithNonce is an OCSP request for cert with a nonce extension
// of the given bytes (RFC 8954).
func ocspRequestWithNonce(t *testing.T, cert, issuer *x509.Certificate, nonce []byte) []byte {
	t.Helper()
	plain, err := ocsp.CreateRequest(cert, issuer, nil)
	if err != nil {
		t.Fatal(err)
	}
	in := cryptobyte.String(plain)
	var req, tbs cryptobyte.String
	if !in.ReadASN1(&req, cbasn1.SEQUENCE) || !req.ReadASN1(&tbs, cbasn1.SEQUENCE) {
		t.Fatal("unexpected request encoding")
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddBytes(tbs)
			b.AddASN1(cbasn1.Tag(2).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1ObjectIdentifier([]int{1, 3, 6, 1, 5, 5, 7, 48, 1, 2})
						b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) { b.AddASN1OctetString(nonce) })
					})
				})
			})
		})
	})
	return b.BytesOrPanic()
}

// testOCSPGet: GET with the base64 request raw in the path (holding "/"
// and "//", which ServeMux would clean and redirect) and URL-escaped, the
// RFC 5019 caching headers on GET answers, and no caching of an answer
// that echoes a nonce.
func testOCSPGet(t *testing.T, e *e2e, good device) {
	certs, err := verify.ParseChainPEM(e.chain)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := verify.ParseChainPEM([]byte(good.cert))
	if err != nil {
		t.Fatal(err)
	}
	var raw string
	for range 5000 {
		nonce := make([]byte, 16)
		rand.Read(nonce)
		if b := base64.StdEncoding.EncodeToString(ocspRequestWithNonce(t, dev[0], certs[0], nonce)); strings.Contains(b, "//") {
			raw = b
			break
		}
	}
	if raw == "" {
		t.Fatal("no request with \"//\" in its base64 found")
	}
	plain, err := ocsp.CreateRequest(dev[0], certs[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		cached     bool
	}{
		{"raw with //", raw, false},
		{"escaped", url.PathEscape(raw), false},
		{"no nonce, escaped", strings.NewReplacer("/", "%2F", "+", "%2B", "=", "%3D").Replace(base64.StdEncoding.EncodeToString(plain)), true},
		{"no nonce, raw", base64.StdEncoding.EncodeToString(plain), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := e.do(t, "none", "GET", "/v1/ocsp/"+tc.path, nil)
			if a.status != 200 || a.header.Get("Content-Type") != "application/ocsp-response" {
				t.Fatalf("GET: %d %s", a.status, a.body)
			}
			r, err := ocsp.ParseResponseForCert(a.body, dev[0], certs[0])
			if err != nil || r.Status != ocsp.Good {
				t.Fatalf("response: %v", err)
			}
			cc := a.header.Get("Cache-Control")
			if !tc.cached {
				if cc != "no-store" || a.header.Get("ETag") != "" {
					t.Fatalf("an answer echoing a nonce is cacheable: %v", a.header)
				}
				return
			}
			for _, want := range []string{"public", "no-transform", "must-revalidate", "max-age="} {
				if !strings.Contains(cc, want) {
					t.Fatalf("Cache-Control %q lacks %s", cc, want)
				}
			}
			age, err := strconv.Atoi(cc[strings.Index(cc, "max-age=")+8 : strings.Index(cc, ",")])
			if err != nil || age <= 0 || time.Duration(age)*time.Second > r.NextUpdate.Sub(r.ThisUpdate) {
				t.Fatalf("max-age %d for %s..%s", age, r.ThisUpdate, r.NextUpdate)
			}
			exp, err1 := time.Parse(time.RFC1123, a.header.Get("Expires"))
			mod, err2 := time.Parse(time.RFC1123, a.header.Get("Last-Modified"))
			if err1 != nil || err2 != nil || !exp.Equal(r.NextUpdate) || !mod.Equal(r.ThisUpdate) || len(a.header.Get("ETag")) < 10 {
				t.Fatalf("Expires %q Last-Modified %q ETag %q; response %s..%s", a.header.Get("Expires"), a.header.Get("Last-Modified"),
					a.header.Get("ETag"), r.ThisUpdate, r.NextUpdate)
			}
		})
	}
}
