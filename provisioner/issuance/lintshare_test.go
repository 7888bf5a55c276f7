package issuance

import (
	"crypto/elliptic"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	"github.com/zmap/zlint/v3/lint"
)

// TestLintsBuiltOnce: the linter builds each lint that has no state once,
// when it is made, and only the others anew for every certificate (zlint's
// CertificateLint.Execute builds and configures every lint per
// certificate); the findings are the same as zlint's.
func TestLintsBuiltOnce(t *testing.T) {
	t.Parallel()
	reg, _, err := DefaultLintConfig().compile()
	if err != nil {
		t.Fatal(err)
	}
	var built atomic.Int64
	var lints []*lint.CertificateLint
	for _, lt := range reg.CertificateLints().Lints() {
		c := *lt
		build := lt.Lint
		c.Lint = func() lint.LintInterface { built.Add(1); return build() }
		lints = append(lints, &c)
	}
	l := newLinterOf(lints, reg.GetConfiguration(), nil)
	perCert := int64(0)
	for _, one := range l.shared {
		if one == nil {
			perCert++
		}
	}
	atMake := built.Load()
	if perCert > 4 || atMake != int64(len(l.lints)) {
		t.Fatalf("%d lints, %d built when the linter was made, %d built per certificate", len(l.lints), atMake, perCert)
	}
	is := softPKI(t, elliptic.P256()).issuer(t, DefaultLintConfig())
	const certs = 5
	for i := 0; i < certs; i++ {
		tok, err := is.Prepare(testRequest(t))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.check(tok.lintDER); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := built.Load()-atMake, certs*perCert; got != want {
		t.Fatalf("%d lints built for %d certificates, want %d (only the %d with state)", got, certs, want, perCert)
	}
}

// TestSharedLintsAnswerAsZlint runs every shared lint, the way the linter
// does, over zlint's own test certificates (some 1,300, most of them
// written to make some lint fire) and compares each result with zlint's
// CertificateLint.Execute.
func TestSharedLintsAnswerAsZlint(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/zmap/zlint/v3").Output()
	if err != nil {
		t.Fatalf("locate zlint's module: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(strings.TrimSpace(string(out)), "testdata", "*.pem"))
	if len(files) < 1000 {
		t.Fatalf("%d zlint test certificates, want over 1000", len(files))
	}
	reg, _, err := DefaultLintConfig().compile()
	if err != nil {
		t.Fatal(err)
	}
	l := newLinter(reg, nil)
	certs, fired := 0, 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil || blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := zx509.ParseCertificate(blk.Bytes)
		if err != nil {
			continue
		}
		certs++
		for i, lt := range l.lints {
			one := l.shared[i]
			if one == nil {
				continue
			}
			got, want := runShared(lt, one, c), lt.Execute(c, l.cfg)
			if got.Status != want.Status || !sameDetails(lt, c, l.cfg, got.Details, want.Details) {
				t.Fatalf("%s on %s: %s %q, zlint %s %q", lt.Name, filepath.Base(f), got.Status, got.Details, want.Status, want.Details)
			}
			if got.Status >= lint.Warn {
				fired++
			}
		}
	}
	if certs < 1000 || fired < 100 {
		t.Fatalf("%d certificates parsed, %d findings: the comparison compared little", certs, fired)
	}
	t.Logf("%d certificates, %d findings at warn or above, all as zlint's", certs, fired)
}

// sameDetails compares two details of a lint's result: equal, or equal up
// to the order of their words, or (a few lints report the first of a
// map's entries that fails, in no fixed order) one of the details zlint
// itself gives in further runs.
func sameDetails(lt *lint.CertificateLint, c *zx509.Certificate, cfg lint.Configuration, a, b string) bool {
	for i := 0; i < 64; i++ {
		if a == b || sameWords(a, b) {
			return true
		}
		b = lt.Execute(c, cfg).Details
	}
	return false
}

// sameWords compares two details up to the order of their words (a few
// lints list a map's keys, in no fixed order).
func sameWords(a, b string) bool {
	if a == b {
		return true
	}
	wa, wb := strings.Fields(a), strings.Fields(b)
	sort.Strings(wa)
	sort.Strings(wb)
	return slices.Equal(wa, wb)
}

// appliesTo is a lint without state that applies where it is told to.
type appliesTo struct{}

func (appliesTo) CheckApplies(c *zx509.Certificate) bool { return c.Version == 3 }
func (appliesTo) Execute(*zx509.Certificate) *lint.LintResult {
	return &lint.LintResult{Status: lint.Pass}
}

// TestSharedLintSkipsAllocateNothing: a shared lint that does not apply,
// or is not in effect, is answered without allocating (most of the
// selected lints do not apply to a device certificate, and a result per
// lint and certificate was 8 % of what a device allocated), with the
// status zlint gives.
func TestSharedLintSkipsAllocateNothing(t *testing.T) {
	lt := &lint.CertificateLint{LintMetadata: lint.LintMetadata{Name: "x_test", EffectiveDate: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)},
		Lint: func() lint.LintInterface { return appliesTo{} }}
	one := lt.Lint()
	for _, tc := range []struct {
		name string
		cert zx509.Certificate
		want lint.LintStatus
	}{
		{"not applicable", zx509.Certificate{Version: 1, NotBefore: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}, lint.NA},
		{"not effective", zx509.Certificate{Version: 3, NotBefore: time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC)}, lint.NE},
	} {
		if got, zl := runShared(lt, one, &tc.cert).Status, lt.Execute(&tc.cert, lint.NewEmptyConfig()).Status; got != tc.want || zl != tc.want {
			t.Fatalf("%s: runShared %s, zlint %s, want %s", tc.name, got, zl, tc.want)
		}
		if n := testing.AllocsPerRun(100, func() { runShared(lt, one, &tc.cert) }); n != 0 {
			t.Fatalf("%s: %v allocations per answer, want 0", tc.name, n)
		}
	}
}
