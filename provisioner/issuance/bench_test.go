package issuance

import (
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"testing"

	"github.com/zmap/zlint/v3/lint"

	"github.com/tacline/tacline/hsm"
)

// BenchmarkLint compares zlint over every registered source with the
// restricted set tacline runs, on the same linting certificate (zcrypto
// parse included, as in Prepare). "restricted-no-small-key" shows the cost
// of e_ecdsa_small_private_key, the most expensive lint of the set.
func BenchmarkLint(b *testing.B) {
	p := softPKI(b, elliptic.P256())
	is := p.issuer(b, DefaultLintConfig())
	tok, err := is.Prepare(testRequest(b))
	if err != nil {
		b.Fatal(err)
	}
	lintCert, err := tok.LintCertificate()
	if err != nil {
		b.Fatal(err)
	}
	restricted, _, err := DefaultLintConfig().compile()
	if err != nil {
		b.Fatal(err)
	}
	noSmall := DefaultLintConfig()
	noSmall.Skip = []AllowedLint{{Name: "e_ecdsa_small_private_key", Reason: "benchmark"}}
	noSmallReg, _, err := noSmall.compile()
	if err != nil {
		b.Fatal(err)
	}
	sets := []struct {
		name string
		reg  lint.Registry
	}{
		{name: "restricted", reg: restricted},
		{name: "restricted-no-small-key", reg: noSmallReg},
		{name: "all", reg: lint.GlobalRegistry()},
	}
	for _, s := range sets {
		b.Run(s.name, func(b *testing.B) {
			l := newLinter(s.reg, nil)
			done := cpuMeter(b)
			for b.Loop() {
				// The full set finds TLS-only problems; only the cost matters here.
				_, _ = l.check(lintCert.Raw)
			}
			done()
			n := len(l.lints)
			if l.smallKey != nil {
				n++
			}
			b.ReportMetric(float64(n), "lints")
		})
	}
}

// BenchmarkSteps times the parts of one issuance with a software issuer key.
func BenchmarkSteps(b *testing.B) {
	is := softPKI(b, elliptic.P256()).issuer(b, DefaultLintConfig())
	req := testRequest(b)
	req.Serial = bigSerial(b)
	tmpl, err := is.profile.Template(deviceOf(req), req.PublicKey, req.Serial, req.NotBefore)
	if err != nil {
		b.Fatal(err)
	}
	tmpl.SignatureAlgorithm = is.sigAlg
	b.Run("template", func(b *testing.B) {
		defer cpuMeter(b)()
		for b.Loop() {
			if _, err := is.profile.Template(deviceOf(req), req.PublicKey, req.Serial, req.NotBefore); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("tbs", func(b *testing.B) { // the hand-built TBSCertificate
		defer cpuMeter(b)()
		for b.Loop() {
			if _, err := buildTBS(tmpl, req.PublicKey, is.cert.RawSubject, is.cert.SubjectKeyId, is.sigAlg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("create-certificate", func(b *testing.B) { // what the TBS encoder replaces: crypto/x509 signs, self-verifies, then parse
		parent := &x509.Certificate{RawSubject: is.cert.RawSubject, SubjectKeyId: is.cert.SubjectKeyId, PublicKey: is.throwaway.Public()}
		defer cpuMeter(b)()
		for b.Loop() {
			der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, req.PublicKey, is.throwaway)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := x509.ParseCertificate(der); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("prepare", func(b *testing.B) {
		defer cpuMeter(b)()
		for b.Loop() {
			if _, err := is.Prepare(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("issue", func(b *testing.B) { // software sign + assemble + parse + verify
		toks := make([]*Token, b.N)
		for i := range toks {
			if toks[i], err = is.Prepare(req); err != nil {
				b.Fatal(err)
			}
		}
		b.ResetTimer()
		defer cpuMeter(b)()
		for i := 0; i < b.N; i++ {
			if _, _, err := is.Issue(toks[i]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkIssuanceSoftHSM is the whole path (Prepare + Issue) with the
// issuing key in a real SoftHSM2 token; -cpu 1,2 gives the worker counts.
func BenchmarkIssuanceSoftHSM(b *testing.B) {
	root, issuing := hsmSigners(b, hsm.ECP256)
	is := newPKI(b, root, issuing).issuer(b, DefaultLintConfig())
	req := testRequest(b)
	if _, err := is.Prepare(req); err != nil { // waits for the one-time tables
		b.Fatal(err)
	}
	b.ResetTimer()
	defer cpuMeter(b)()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tok, err := is.Prepare(req)
			if err != nil {
				b.Error(err)
				return
			}
			if _, _, err := is.Issue(tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
