package issuance

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/policy"
)

// testPKI is a root and an issuing CA whose keys are given signers (software
// keys or SoftHSM2 keys).
type testPKI struct {
	root, issuing *x509.Certificate
	issuingKey    crypto.Signer
}

func newPKI(t testing.TB, rootKey, issuingKey crypto.Signer) testPKI {
	t.Helper()
	now := time.Now()
	root, err := ca.SelfSignedRoot(rootKey, pkix.Name{CommonName: "Acme Device Root", Organization: []string{"Acme Devices"}, Country: []string{"DE"}}, ca.UntilNoExpiry(now))
	if err != nil {
		t.Fatal(err)
	}
	iss, err := ca.IssuingCA(root, rootKey, issuingKey.Public(), pkix.Name{CommonName: "Acme Device Issuing CA 1", Organization: []string{"Acme Devices"}, Country: []string{"DE"}}, ca.UntilNoExpiry(now))
	if err != nil {
		t.Fatal(err)
	}
	return testPKI{root: root, issuing: iss, issuingKey: issuingKey}
}

func softPKI(t testing.TB, c elliptic.Curve) testPKI {
	return newPKI(t, genKey(t, c), genKey(t, c))
}

func genKey(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (p testPKI) issuer(t testing.TB, lc LintConfig) *Issuer {
	t.Helper()
	is, err := New(Config{IssuerCert: p.issuing, Chain: []*x509.Certificate{p.root}, Signer: p.issuingKey, Profile: policy.DefaultProfile(), Lint: lc})
	if err != nil {
		t.Fatal(err)
	}
	return is
}

func testRequest(t testing.TB) Request {
	return Request{
		DeviceSerial: "SN-000123",
		Manufacturer: "Acme Devices",
		Model:        "Widget 5G",
		IMEIs:        []imei.IMEI{imei.MustParse("490154203237518"), imei.MustParse("357805023984942")},
		PublicKey:    genKey(t, elliptic.P256()).Public(),
		NotBefore:    time.Now().UTC().Truncate(time.Second),
	}
}

// countingSigner counts signatures; fail makes it return an error, wrongKey
// makes it sign with another key (a faulty HSM, which a real one cannot be
// made to be on demand).
type countingSigner struct {
	crypto.Signer
	calls    atomic.Int64
	fail     error
	wrongKey crypto.Signer
}

func (s *countingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	s.calls.Add(1)
	if s.fail != nil {
		return nil, s.fail
	}
	if s.wrongKey != nil {
		return s.wrongKey.Sign(r, digest, opts)
	}
	return s.Signer.Sign(r, digest, opts)
}

func deviceOf(r Request) policy.Device {
	return policy.Device{Serial: r.DeviceSerial, Manufacturer: r.Manufacturer, Model: r.Model, IMEIs: r.IMEIs}
}

func bigSerial(t testing.TB) *big.Int {
	t.Helper()
	s, err := policy.NewSerial(nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// cpuMeter reports the process CPU time (user+system) per operation as
// "cpu-ns/op": on a machine shared with other builds the wall-clock ns/op
// mostly measures the neighbours, the CPU time does not.
func cpuMeter(b *testing.B) func() {
	start := cpuTime()
	return func() {
		b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
	}
}

func cpuTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
