package issuance

import (
	"crypto"
	"crypto/ecdsa"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	zx509 "github.com/zmap/zcrypto/x509"
	// The root package registers every lint in lint.GlobalRegistry; without
	// it a binary that does not import it elsewhere has an empty registry.
	_ "github.com/zmap/zlint/v3"
	"github.com/zmap/zlint/v3/lint"

	"github.com/tacline/tacline/tacerr"
)

// DefaultLintSources are the zlint sources whose rules apply to a device
// certificate that is not a TLS server, S/MIME, code-signing or EV
// certificate: the X.509 profile (RFC 5280), the algorithm and ECC key
// encodings it uses (RFC 3279, RFC 5480, RFC 8813), the IDNA rules for any
// name (RFC 5891) and zlint's community lints (weak keys, stray whitespace,
// multi-valued RDNs: generic, not TLS-specific). docs/issuance.md says why
// each other source is left out.
var DefaultLintSources = []string{"RFC5280", "RFC3279", "RFC5480", "RFC8813", "RFC5891", "Community"}

// notRun are lints of the selected sources that are never run: they cannot
// say anything about a linting certificate, and cost more than the rest
// together. e_cert_issued_by_compromised_emudhra_ca verifies the certificate's
// signature against compromised keys of one public TLS CA (a P-384
// verification, about 6 ms, per certificate); the linting certificate is
// signed by a throwaway key, and Issue verifies the real signature under
// tacline's own issuer key.
var notRun = []string{"e_cert_issued_by_compromised_emudhra_ca"}

// LintConfig selects the zlint lints run before every signature.
type LintConfig struct {
	// Sources are zlint source names (RFC5280, RFC5480, ...). Empty means
	// DefaultLintSources.
	Sources []string `yaml:"sources" doc:"zlint sources run before every signature (empty: the default list)"`
	// Allow lists lints whose warnings or errors do not block issuance, each
	// with the reason the profile deliberately triggers it.
	Allow []AllowedLint `yaml:"allow" doc:"lints allowed to fail, each with name and reason"`
	// Skip lists lints of the selected sources that are not run at all, each
	// with a reason (for a lint whose cost outweighs what it can find).
	Skip []AllowedLint `yaml:"skip" doc:"lints not run at all, each with name and reason"`
}

// AllowedLint names one lint allowed to fail (or skipped), with the reason.
type AllowedLint struct {
	Name   string `yaml:"name" doc:"the zlint lint name"`
	Reason string `yaml:"reason" doc:"why (required)"`
}

// DefaultLintConfig runs DefaultLintSources and allows nothing.
func DefaultLintConfig() LintConfig {
	return LintConfig{Sources: append([]string(nil), DefaultLintSources...)}
}

// Validate names the first field at fault ("lint.allow[0].reason").
func (c LintConfig) Validate() error {
	_, _, err := c.compile()
	return err
}

// compile returns the filtered registry and the allowed lint names.
func (c LintConfig) compile() (lint.Registry, map[string]string, error) {
	srcs := c.Sources
	if len(srcs) == 0 {
		srcs = DefaultLintSources
	}
	var list lint.SourceList
	for i, s := range srcs {
		var src lint.LintSource
		src.FromString(s)
		if src == lint.UnknownLintSource {
			return nil, nil, tacerr.Field(tacerr.InvalidConfig, fmt.Sprintf("lint.sources[%d]", i), "%q is not a zlint source (RFC5280, RFC3279, RFC5480, RFC8813, RFC5891, Community, CABF_BR, ...)", s)
		}
		list = append(list, src)
	}
	allowed, err := lintReasons("lint.allow", c.Allow)
	if err != nil {
		return nil, nil, err
	}
	skipped, err := lintReasons("lint.skip", c.Skip)
	if err != nil {
		return nil, nil, err
	}
	exclude := append([]string(nil), notRun...)
	for name := range skipped {
		exclude = append(exclude, name)
	}
	reg, err := lint.GlobalRegistry().Filter(lint.FilterOptions{IncludeSources: list, ExcludeNames: exclude})
	if err != nil {
		return nil, nil, tacerr.Wrap(tacerr.InvalidConfig, err, "lint.sources: cannot build the lint registry")
	}
	return reg, allowed, nil
}

// lintReasons checks a list of lint names with reasons under field.
func lintReasons(field string, list []AllowedLint) (map[string]string, error) {
	out := make(map[string]string, len(list))
	all := lint.GlobalRegistry().CertificateLints()
	for i, a := range list {
		f := fmt.Sprintf("%s[%d]", field, i)
		switch {
		case all.ByName(a.Name) == nil:
			return nil, tacerr.Field(tacerr.InvalidConfig, f+".name", "%q is not a zlint certificate lint name (see `zlint -list-lints-json`)", a.Name)
		case strings.TrimSpace(a.Reason) == "":
			return nil, tacerr.Field(tacerr.InvalidConfig, f+".reason", "lint %s needs a reason saying why the profile triggers it or why it is skipped", a.Name)
		case out[a.Name] != "":
			return nil, tacerr.Field(tacerr.InvalidConfig, f+".name", "lint %s is listed twice", a.Name)
		}
		out[a.Name] = a.Reason
	}
	return out, nil
}

// linter runs a fixed set of lints over DER certificates. It calls each
// lint's Execute itself (what zlint.LintCertificateEx does, minus sorting the
// registry's names and filling a result map on every certificate), and
// answers e_ecdsa_small_private_key for P-256 keys with a table lookup
// (smallkey.go) instead of zlint's search.
type linter struct {
	lints []*lint.CertificateLint
	// shared holds, by index into lints, the one instance of each lint that
	// has no state (shareable); nil for a lint built anew per certificate.
	shared   []lint.LintInterface
	smallKey *lint.CertificateLint // zlint's e_ecdsa_small_private_key, when selected
	cfg      lint.Configuration
	allowed  map[string]string
}

func newLinter(reg lint.Registry, allowed map[string]string) *linter {
	return newLinterOf(reg.CertificateLints().Lints(), reg.GetConfiguration(), allowed)
}

func newLinterOf(lints []*lint.CertificateLint, cfg lint.Configuration, allowed map[string]string) *linter {
	l := &linter{cfg: cfg, allowed: allowed}
	for _, lt := range lints {
		if lt.Name == smallKeyLint {
			l.smallKey = lt
			continue
		}
		l.lints = append(l.lints, lt)
		var one lint.LintInterface
		if inst := lt.Lint(); shareable(lt, inst) {
			one = inst
		}
		l.shared = append(l.shared, one)
	}
	if l.smallKey != nil {
		p256Small.warm()
	}
	return l
}

// LintFinding is one lint result at warn level or above.
type LintFinding struct {
	Name    string
	Status  string // warn, error, fatal
	Details string
	Allowed bool
}

// check parses der with zcrypto and runs the lints. It returns the findings
// at warn or above (allowed ones included, marked) and an error of code
// lint_failed naming every finding that is not allowed.
func (l *linter) check(der []byte) ([]LintFinding, error) {
	c, err := zx509.ParseCertificate(der)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.LintFailed, err, "the linting certificate does not parse with zcrypto")
	}
	var out []LintFinding
	var blocking []string
	record := func(name string, r *lint.LintResult) {
		if r.Status < lint.Warn {
			return
		}
		_, ok := l.allowed[name]
		out = append(out, LintFinding{Name: name, Status: r.Status.String(), Details: r.Details, Allowed: ok})
		if !ok {
			msg := name + " (" + r.Status.String()
			if r.Details != "" {
				msg += ": " + r.Details
			}
			blocking = append(blocking, msg+")")
		}
	}
	for i, lt := range l.lints {
		if one := l.shared[i]; one != nil {
			record(lt.Name, runShared(lt, one, c))
			continue
		}
		record(lt.Name, lt.Execute(c, l.cfg))
	}
	if l.smallKey != nil {
		record(smallKeyLint, l.checkSmallKey(c))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	if len(blocking) > 0 {
		sort.Strings(blocking)
		return out, tacerr.New(tacerr.LintFailed, "the certificate failed %d lint(s): %s; fix the profile, or allow the lint in lint.allow with a reason", len(blocking), strings.Join(blocking, "; "))
	}
	return out, nil
}

// deviceKey answers e_ecdsa_small_private_key for a device key alone,
// before a certificate exists: the one selected lint whose verdict depends
// on nothing but the device's key, so a caller can refuse the key before
// it reserves anything. nil when the lint is not run, is allowed, or
// passes; otherwise csr_invalid on field csr with zlint's name and details.
func (l *linter) deviceKey(pub crypto.PublicKey) error {
	if l.smallKey == nil {
		return nil
	}
	if _, ok := l.allowed[smallKeyLint]; ok {
		return nil
	}
	key, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil
	}
	// What zlint reads of a certificate for this lint: the key (and a
	// notBefore for the effective date, which is zero for this lint).
	r := l.checkSmallKey(&zx509.Certificate{PublicKeyAlgorithm: zx509.ECDSA, PublicKey: key, NotBefore: time.Now()})
	if r.Status < lint.Warn {
		return nil
	}
	return tacerr.Field(tacerr.CSRInvalid, "csr", "weak key: %s (%s: %s); the device's key generator is broken, make a new key", smallKeyLint, r.Status, r.Details)
}

// checkSmallKey answers e_ecdsa_small_private_key: by table lookup for a
// valid P-256 key, by zlint's own lint for anything else.
func (l *linter) checkSmallKey(c *zx509.Certificate) *lint.LintResult {
	if key := certECDSAKey(c); key != nil {
		if d, ok, err := smallScalar(key); ok && err == nil {
			if d == 0 {
				return &lint.LintResult{Status: lint.Pass}
			}
			return &lint.LintResult{Status: lint.Error, Details: smallKeyDetails(d)}
		}
	}
	return l.smallKey.Execute(c, l.cfg)
}

// shareable reports whether one instance of a lint can serve every
// certificate, from every goroutine, with the same results as zlint's
// CertificateLint.Execute, which builds the lint anew (Lint) and configures
// it for each certificate: its implementation is a struct without fields
// (nothing to configure, nothing kept between CheckApplies and Execute or
// from one certificate to the next), and its source is not one that
// Execute's framework filter answers before the lint runs (CA/B Forum
// TLS, S/MIME and code-signing lints).
func shareable(lt *lint.CertificateLint, inst lint.LintInterface) bool {
	if _, ok := inst.(lint.Configurable); ok {
		return false
	}
	switch lt.Source {
	case lint.CABFBaselineRequirements, lint.CABFSMIMEBaselineRequirements, lint.CABFCSBaselineRequirements:
		return false
	}
	t := reflect.TypeOf(inst)
	if t == nil {
		return false
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Kind() == reflect.Struct && t.NumField() == 0
}

// notApplicable and notEffective are runShared's answers for a lint that
// does not apply to the certificate, or is not yet in effect: one value
// each, shared by every certificate (most of the selected lints do not
// apply to a device certificate, and a new result per lint and certificate
// was 8 % of the bytes a provisioned device allocated). Nothing writes to
// a result: check only reads its status and details.
var (
	notApplicable = lint.LintResult{Status: lint.NA}
	notEffective  = lint.LintResult{Status: lint.NE}
)

// runShared is what CertificateLint.Execute does for a shareable lint,
// minus building and configuring it: CheckApplies, CheckEffective,
// Execute, a panic answered as Fatal.
func runShared(lt *lint.CertificateLint, one lint.LintInterface, c *zx509.Certificate) (r *lint.LintResult) {
	defer func() {
		if err := recover(); err != nil {
			r = &lint.LintResult{Status: lint.Fatal, Details: fmt.Sprintf("'%s' panicked. Error: %v", lt.Name, err)}
		}
	}()
	if !one.CheckApplies(c) {
		return &notApplicable
	}
	if !lt.CheckEffective(c) {
		return &notEffective
	}
	return one.Execute(c)
}
