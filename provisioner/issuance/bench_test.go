package issuance

import (
	"crypto/elliptic"
	"testing"

	"github.com/zmap/zlint/v3/lint"
)

// BenchmarkLint compares zlint over every registered source with the
// restricted set tacline runs, on the same linting certificate (zcrypto
// parse included, as in Prepare).
func BenchmarkLint(b *testing.B) {
	p := softPKI(b, elliptic.P256())
	is := p.issuer(b, DefaultLintConfig())
	lintCert, _, err := is.Prepare(testRequest(b))
	if err != nil {
		b.Fatal(err)
	}
	restricted, _, err := DefaultLintConfig().compile()
	if err != nil {
		b.Fatal(err)
	}
	sets := []struct {
		name string
		reg  lint.Registry
	}{
		{name: "restricted", reg: restricted},
		{name: "all", reg: lint.GlobalRegistry()},
	}
	for _, s := range sets {
		b.Run(s.name, func(b *testing.B) {
			l := &linter{reg: s.reg, allowed: map[string]string{}}
			b.ReportMetric(float64(len(s.reg.Names())), "lints")
			for b.Loop() {
				// The full set finds TLS-only problems; only the cost matters here.
				_, _ = l.check(lintCert.Raw)
			}
		})
	}
}

// BenchmarkPrepare is build + throwaway signature + restricted lint.
func BenchmarkPrepare(b *testing.B) {
	is := softPKI(b, elliptic.P256()).issuer(b, DefaultLintConfig())
	req := testRequest(b)
	for b.Loop() {
		if _, _, err := is.Prepare(req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPrepareIssue is the whole issuance with a software issuer key.
func BenchmarkPrepareIssue(b *testing.B) {
	is := softPKI(b, elliptic.P256()).issuer(b, DefaultLintConfig())
	req := testRequest(b)
	for b.Loop() {
		_, tok, err := is.Prepare(req)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := is.Issue(tok); err != nil {
			b.Fatal(err)
		}
	}
}
