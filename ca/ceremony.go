package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/tacline/tacline/internal/pemblock"
	"github.com/tacline/tacline/tacerr"
)

// IssuerRecord is one issuing CA known to tacline. KeyID is the hex
// subjectKeyIdentifier of its certificate; exactly one record is Active.
type IssuerRecord struct {
	Label     string    `json:"label"`  // the HSM key label
	KeyID     string    `json:"key_id"` // hex SKID
	Curve     string    `json:"curve"`  // P-256, P-384
	CertPEM   string    `json:"cert_pem"`
	ChainPEM  string    `json:"chain_pem"` // certificates above it, root last
	Active    bool      `json:"active"`
	CreatedAt time.Time `json:"created_at"`
}

// IssuerStore persists issuers. AddIssuer refuses a duplicate KeyID
// (conflict); adding an Active record, or Activate, makes every other record
// inactive; Activate of an unknown key id is not_found. LabelInUse returns
// the key id of the issuer of any kind recorded under label ("" when
// none): a ceremony checks it before it makes a key under that label.
type IssuerStore interface {
	AddIssuer(ctx context.Context, r IssuerRecord) error
	ListIssuers(ctx context.Context) ([]IssuerRecord, error)
	Activate(ctx context.Context, keyID string) error
	LabelInUse(ctx context.Context, label string) (keyID string, err error)
}

// KeyGenerator makes a non-extractable key pair in the HSM and returns its
// signer. curve is "P-256" or "P-384". The command layer adapts hsm.Token.
type KeyGenerator interface {
	GenerateKey(label, curve string) (crypto.Signer, error)
}

// CeremonyOptions name the keys and certificates of a ceremony.
type CeremonyOptions struct {
	RootLabel    string    // HSM label of the root key (dev only)
	IssuerLabel  string    // HSM label of the issuing CA key
	Curve        string    // P-256 (default) or P-384
	Organization string    // subject O of the CA certificates
	Country      string    // subject C, optional
	RootCN       string    // default "<Organization> Device Root CA"
	IssuerCN     string    // default "<Organization> Device Issuing CA <label>"
	RootValidity Validity  // default until NoExpiry
	CAValidity   Validity  // default until NoExpiry
	Now          time.Time // the ceremony time; required
	// DeviceNotAfter is the latest notAfter the device profile can give
	// (policy.Profile.FixedNotAfter; zero when it is a duration): the
	// issuing CA must not end before it.
	DeviceNotAfter time.Time
}

func (o *CeremonyOptions) fill(dev bool) error {
	if o.Now.IsZero() {
		return tacerr.Field(tacerr.InvalidInput, "now", "the ceremony time is required")
	}
	if o.Curve == "" {
		o.Curve = "P-256"
	}
	if o.Curve != "P-256" && o.Curve != "P-384" {
		return tacerr.Field(tacerr.InvalidInput, "curve", "%q: use P-256 or P-384", o.Curve)
	}
	if o.Organization == "" {
		return tacerr.Field(tacerr.InvalidInput, "organization", "the manufacturer's name is required")
	}
	if o.IssuerLabel == "" || dev && o.RootLabel == "" {
		return tacerr.Field(tacerr.InvalidInput, "label", "HSM key labels are required")
	}
	if dev && o.RootLabel == o.IssuerLabel {
		return tacerr.Field(tacerr.InvalidInput, "label", "the root and issuing keys need different labels")
	}
	if o.RootCN == "" {
		o.RootCN = o.Organization + " Device Root CA"
	}
	if o.IssuerCN == "" {
		o.IssuerCN = o.Organization + " Device Issuing CA " + o.IssuerLabel
	}
	if o.RootValidity == (Validity{}) {
		o.RootValidity = UntilNoExpiry(o.Now)
	}
	if o.CAValidity == (Validity{}) {
		o.CAValidity = UntilNoExpiry(o.Now)
	}
	return checkCoversDevices(o.CAValidity.NotAfter, o.DeviceNotAfter)
}

// checkCoversDevices refuses an issuing CA that ends before the device
// certificates it would sign.
func checkCoversDevices(caNotAfter, deviceNotAfter time.Time) error {
	if !deviceNotAfter.IsZero() && deviceNotAfter.After(caNotAfter) {
		return tacerr.Field(tacerr.InvalidInput, "validity", "the issuing CA would end %s, before the device certificates it signs (profile.not_after %s): no certificate may outlive its issuer; issue the CA until %s (IEEE 802.1AR) or set profile.not_after to a duration",
			caNotAfter.UTC().Format(time.RFC3339), deviceNotAfter.UTC().Format("20060102150405Z"), NoExpiry.Format("20060102150405Z"))
	}
	return nil
}

func (o CeremonyOptions) name(cn string) pkix.Name {
	n := pkix.Name{CommonName: cn, Organization: []string{o.Organization}}
	if o.Country != "" {
		n.Country = []string{o.Country}
	}
	return n
}

// DevCeremony is what InitDev made.
type DevCeremony struct {
	Root, Issuing *x509.Certificate
	RootSigner    crypto.Signer // stays in the HSM; kept for rotation in development
	Record        IssuerRecord
}

// InitDev is `tacline ca init --dev`: a root key and an issuing CA key made
// in the HSM, a self-signed root, the issuing CA certificate signed by it,
// and the issuer recorded (active when no issuer is active yet). The caller
// writes Root and Issuing as PEM.
func InitDev(ctx context.Context, store IssuerStore, gen KeyGenerator, o CeremonyOptions) (*DevCeremony, error) {
	if err := o.fill(true); err != nil {
		return nil, err
	}
	rootKey, err := gen.GenerateKey(o.RootLabel, o.Curve)
	if err != nil {
		return nil, fmt.Errorf("generate root key %q: %w", o.RootLabel, err)
	}
	root, err := SelfSignedRoot(rootKey, o.name(o.RootCN), o.RootValidity)
	if err != nil {
		return nil, err
	}
	rec, issuing, err := newIssuing(ctx, store, gen, root, rootKey, o, false)
	if err != nil {
		return nil, err
	}
	return &DevCeremony{Root: root, Issuing: issuing, RootSigner: rootKey, Record: rec}, nil
}

// RotateDev is `tacline ca rotate --dev`: a new issuing CA key in the HSM,
// certified by the existing root, recorded as the active issuer in one
// write (AddIssuer of an active record: no moment, and no crash, leaves it
// recorded but inactive); the old issuers stay recorded (inactive) for
// verification.
func RotateDev(ctx context.Context, store IssuerStore, gen KeyGenerator, root *x509.Certificate, rootSigner crypto.Signer, o CeremonyOptions) (IssuerRecord, *x509.Certificate, error) {
	if err := o.fill(false); err != nil {
		return IssuerRecord{}, nil, err
	}
	return newIssuing(ctx, store, gen, root, rootSigner, o, true)
}

// newIssuing makes, certifies and records an issuing CA: active when
// activate is set or no issuer is active yet.
func newIssuing(ctx context.Context, store IssuerStore, gen KeyGenerator, root *x509.Certificate, rootKey crypto.Signer, o CeremonyOptions, activate bool) (IssuerRecord, *x509.Certificate, error) {
	if err := checkLabelFree(ctx, store, o.IssuerLabel); err != nil {
		return IssuerRecord{}, nil, err
	}
	if err := CheckOutlives(fmt.Sprintf("issuing CA %q", o.IssuerCN), o.CAValidity.NotAfter, root); err != nil {
		return IssuerRecord{}, nil, err
	}
	active, err := hasActive(ctx, store)
	if err != nil {
		return IssuerRecord{}, nil, err
	}
	key, err := gen.GenerateKey(o.IssuerLabel, o.Curve)
	if err != nil {
		return IssuerRecord{}, nil, fmt.Errorf("generate issuing key %q: %w", o.IssuerLabel, err)
	}
	issuing, err := IssuingCA(root, rootKey, key.Public(), o.name(o.IssuerCN), o.CAValidity)
	if err != nil {
		return IssuerRecord{}, nil, keyLeft(o.IssuerLabel, err)
	}
	rec := record(o.IssuerLabel, issuing, []*x509.Certificate{root}, activate || !active, o.Now)
	if err := store.AddIssuer(ctx, rec); err != nil {
		return IssuerRecord{}, nil, keyLeft(o.IssuerLabel, fmt.Errorf("record issuer %s: %w", rec.KeyID, err))
	}
	return rec, issuing, nil
}

// checkLabelFree refuses a label an issuer of the store is recorded under
// (conflict, field label), before a key is made under it: its certificate
// could never be recorded.
func checkLabelFree(ctx context.Context, store IssuerStore, label string) error {
	keyID, err := store.LabelInUse(ctx, label)
	if err != nil {
		return err
	}
	if keyID != "" {
		return tacerr.Field(tacerr.Conflict, "label", "the ledger has an issuer labelled %q already (key id %s; `tacline ca list`): choose a label no issuer has; no key was made", label, keyID)
	}
	return nil
}

// keyLeft is err of a ceremony step after the key labelled label was made:
// it says the key is in the HSM, unused, so that the operator knows what
// the failed run left (the code is err's).
func keyLeft(label string, err error) error {
	return tacerr.Prefixed(fmt.Sprintf("the new key %q is left in the HSM, unused (run again with another label)", label), err, tacerr.Internal)
}

// InitOffline is `tacline ca init` without --dev: the issuing CA key made in
// the HSM and the PEM CSR to send to the manufacturer's offline root.
// A label an issuer of store is recorded under is refused before the key
// is made (the certificate the root would sign could not be imported).
func InitOffline(ctx context.Context, store IssuerStore, gen KeyGenerator, o CeremonyOptions) ([]byte, error) {
	if err := o.fill(false); err != nil {
		return nil, err
	}
	if err := checkLabelFree(ctx, store, o.IssuerLabel); err != nil {
		return nil, err
	}
	key, err := gen.GenerateKey(o.IssuerLabel, o.Curve)
	if err != nil {
		return nil, fmt.Errorf("generate issuing key %q: %w", o.IssuerLabel, err)
	}
	der, err := CSRForKey(key, o.name(o.IssuerCN))
	if err != nil {
		return nil, keyLeft(o.IssuerLabel, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// Import is `tacline ca import --cert FILE`: it checks that the certificate
// (first PEM block of certPEM; any further blocks, then chainPEM, form its
// chain up to the root) certifies the HSM key behind signer, is a CA allowed
// to sign, chains to the last certificate given (with no chain given,
// there is nothing to check it against), outlives neither certificate
// above it, and ends no earlier than deviceNotAfter (the device profile's
// fixed notAfter; zero: not checked); then records it (active when
// activate is set or no issuer is active yet). An issuer it would record
// inactive must come with its chain (field chain), which Activate checks
// later. A refusal records nothing.
func Import(ctx context.Context, store IssuerStore, label string, signer crypto.Signer, certPEM, chainPEM []byte, activate bool, now, deviceNotAfter time.Time) (IssuerRecord, error) {
	certs, err := ParseChainPEM(certPEM)
	if err != nil {
		return IssuerRecord{}, err
	}
	if len(chainPEM) > 0 {
		more, err := ParseChainPEM(chainPEM)
		if err != nil {
			return IssuerRecord{}, err
		}
		certs = append(certs, more...)
	}
	cert, chain := certs[0], certs[1:]
	if err := CheckCertMatchesKey(cert, signer.Public()); err != nil {
		return IssuerRecord{}, err
	}
	if err := checkIssuing(cert, chain, now, deviceNotAfter); err != nil {
		return IssuerRecord{}, err
	}
	active, err := hasActive(ctx, store)
	if err != nil {
		return IssuerRecord{}, err
	}
	if active && !activate && len(chain) == 0 {
		// Recorded inactive, it could never be activated: Activate
		// refuses an issuer whose chain it cannot check.
		return IssuerRecord{}, tacerr.Field(tacerr.InvalidInput, "chain", "certificate %q is imported without --activate and without its issuers: `tacline ca activate` checks an issuer's chain up to its root before it switches to it; give the chain (--chain ROOT.pem, or after the certificate in --cert)", cert.Subject)
	}
	rec := record(label, cert, chain, activate || !active, now)
	if err := store.AddIssuer(ctx, rec); err != nil {
		return IssuerRecord{}, fmt.Errorf("record issuer %s: %w", rec.KeyID, err)
	}
	return rec, nil
}

// checkIssuing refuses (invalid_input) an issuing CA certificate that is
// not a CA with a subjectKeyIdentifier, is not valid at now, does not chain
// to the last certificate of chain (when one is given), outlives a
// certificate above it, or ends before deviceNotAfter (zero: not checked).
func checkIssuing(cert *x509.Certificate, chain []*x509.Certificate, now, deviceNotAfter time.Time) error {
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 || len(cert.SubjectKeyId) == 0 {
		return tacerr.Field(tacerr.InvalidInput, "cert", "certificate %q must be a CA (basicConstraints CA:TRUE, keyUsage keyCertSign) with a subjectKeyIdentifier", cert.Subject)
	}
	// With a chain, Verify below checks this too; without one it is the
	// only check of the certificate's dates.
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		what := "is expired"
		if now.Before(cert.NotBefore) {
			what = "is not yet valid"
		}
		return tacerr.Field(tacerr.InvalidInput, "validity", "certificate %q %s (now %s): it is valid from %s until %s; have the root issue one valid now",
			cert.Subject, what, now.UTC().Format(time.RFC3339), cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if len(chain) > 0 {
		roots, inter := x509.NewCertPool(), x509.NewCertPool()
		roots.AddCert(chain[len(chain)-1])
		for _, c := range chain[:len(chain)-1] {
			inter.AddCert(c)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return tacerr.Wrap(tacerr.InvalidInput, err, "certificate %q does not chain to %q", cert.Subject, chain[len(chain)-1].Subject)
		}
		all := append([]*x509.Certificate{cert}, chain...)
		for i, c := range all[:len(all)-1] {
			if err := CheckOutlives(fmt.Sprintf("certificate %q", c.Subject.CommonName), c.NotAfter, all[i+1]); err != nil {
				return err
			}
		}
	}
	return checkCoversDevices(cert.NotAfter, deviceNotAfter)
}

// KeySource finds the HSM key behind a label (castore.Keys).
type KeySource interface {
	Signer(label string) (crypto.Signer, error)
}

// Activate is `tacline ca activate --key-id K`: it makes the recorded
// issuer K (prepared with `ca init` and `ca import` without --activate, or
// an earlier one) the active issuer, every other one inactive. It decides
// before anything is written, refusing an issuer that is unknown
// (not_found), whose certificate is expired or not yet valid at now, that
// records no chain or does not chain to the root it records, that
// outlives a certificate above it or ends before deviceNotAfter
// (invalid_state, field key_id), or whose key is not in the HSM under its
// label or is another key there (hsm_key_not_found, field key_id); a
// revoked issuer is refused by the store (invalid_state). An issuer
// already active is answered as it is, nothing written. Running servers
// switch to it within provisioning.issuer_refresh.
func Activate(ctx context.Context, store IssuerStore, keys KeySource, keyID string, now, deviceNotAfter time.Time) (IssuerRecord, error) {
	recs, err := store.ListIssuers(ctx)
	if err != nil {
		return IssuerRecord{}, err
	}
	i := slices.IndexFunc(recs, func(r IssuerRecord) bool { return r.KeyID == keyID })
	if i < 0 {
		return IssuerRecord{}, tacerr.Field(tacerr.NotFound, "key_id", "no device issuer with key id %q: `tacline ca list` shows them", keyID)
	}
	rec := recs[i]
	if rec.Active {
		return rec, nil
	}
	refuse := func(format string, args ...any) error {
		return tacerr.Field(tacerr.InvalidState, "key_id", "issuer %s (%s) cannot become the active issuer: %s; the active issuer is unchanged", keyID, rec.Label, fmt.Sprintf(format, args...))
	}
	certs, err := ParseChainPEM([]byte(rec.CertPEM))
	if err != nil {
		return IssuerRecord{}, refuse("its recorded certificate does not parse (%v)", err)
	}
	if rec.ChainPEM == "" {
		return IssuerRecord{}, refuse("it records no chain up to its root (imported without --chain), so tacline cannot check that it chains")
	}
	chain, err := ParseChainPEM([]byte(rec.ChainPEM))
	if err != nil {
		return IssuerRecord{}, refuse("its recorded chain does not parse (%v)", err)
	}
	if err := checkIssuing(certs[0], chain, now, deviceNotAfter); err != nil {
		msg := err.Error()
		if e, ok := tacerr.As(err); ok {
			msg = e.Message
			if e.Err != nil {
				msg += ": " + e.Err.Error()
			}
		}
		return IssuerRecord{}, refuse("%s", msg)
	}
	signer, err := keys.Signer(rec.Label)
	if tacerr.Is(err, tacerr.HSMKeyNotFound) {
		return IssuerRecord{}, tacerr.Field(tacerr.HSMKeyNotFound, "key_id", "issuer %s cannot become the active issuer: its key %q is not in this HSM token (`tacline hsm list` shows the keys); the active issuer is unchanged", keyID, rec.Label)
	}
	if err != nil {
		return IssuerRecord{}, err
	}
	if CheckCertMatchesKey(certs[0], signer.Public()) != nil {
		return IssuerRecord{}, tacerr.Field(tacerr.HSMKeyNotFound, "key_id", "issuer %s cannot become the active issuer: the HSM key labelled %q is another key than its certificate's; the active issuer is unchanged", keyID, rec.Label)
	}
	if err := store.Activate(ctx, keyID); err != nil {
		return IssuerRecord{}, err
	}
	rec.Active = true
	return rec, nil
}

// IssuerInfo is one line of `tacline ca list`.
type IssuerInfo struct {
	Label, KeyID, Curve string
	Subject             string
	NotBefore, NotAfter time.Time
	Active              bool
}

// List is `tacline ca list`: every issuer, active first, then newest first.
func List(ctx context.Context, store IssuerStore) ([]IssuerInfo, error) {
	recs, err := store.ListIssuers(ctx)
	if err != nil {
		return nil, err
	}
	sort.SliceStable(recs, func(i, j int) bool {
		if recs[i].Active != recs[j].Active {
			return recs[i].Active
		}
		return recs[i].CreatedAt.After(recs[j].CreatedAt)
	})
	out := make([]IssuerInfo, 0, len(recs))
	for _, r := range recs {
		certs, err := ParseChainPEM([]byte(r.CertPEM))
		if err != nil {
			return nil, fmt.Errorf("issuer %s: stored certificate: %w", r.KeyID, err)
		}
		c := certs[0]
		out = append(out, IssuerInfo{Label: r.Label, KeyID: r.KeyID, Curve: r.Curve, Subject: c.Subject.String(), NotBefore: c.NotBefore, NotAfter: c.NotAfter, Active: r.Active})
	}
	return out, nil
}

// ActiveIssuer returns the active record and its parsed certificate and chain.
func ActiveIssuer(ctx context.Context, store IssuerStore) (IssuerRecord, *x509.Certificate, []*x509.Certificate, error) {
	recs, err := store.ListIssuers(ctx)
	if err != nil {
		return IssuerRecord{}, nil, nil, err
	}
	for _, r := range recs {
		if !r.Active {
			continue
		}
		certs, err := ParseChainPEM([]byte(r.CertPEM))
		if err != nil {
			return IssuerRecord{}, nil, nil, fmt.Errorf("issuer %s: %w", r.KeyID, err)
		}
		var chain []*x509.Certificate
		if r.ChainPEM != "" {
			if chain, err = ParseChainPEM([]byte(r.ChainPEM)); err != nil {
				return IssuerRecord{}, nil, nil, fmt.Errorf("issuer %s chain: %w", r.KeyID, err)
			}
		}
		return r, certs[0], chain, nil
	}
	return IssuerRecord{}, nil, nil, tacerr.New(tacerr.NotFound, "no active issuer; run `tacline ca init` or `tacline ca import`")
}

func hasActive(ctx context.Context, store IssuerStore) (bool, error) {
	recs, err := store.ListIssuers(ctx)
	if err != nil {
		return false, err
	}
	for _, r := range recs {
		if r.Active {
			return true, nil
		}
	}
	return false, nil
}

func record(label string, cert *x509.Certificate, chain []*x509.Certificate, active bool, now time.Time) IssuerRecord {
	r := IssuerRecord{Label: label, KeyID: KeyID(cert), Curve: CurveName(cert.PublicKey), CertPEM: string(ChainPEM(cert)), Active: active, CreatedAt: now.UTC()}
	if len(chain) > 0 {
		r.ChainPEM = string(ChainPEM(chain...))
	}
	return r
}

// CertifyCSR is `tacline ca certify --csr FILE` at headquarters: the
// device root (root, its key behind rootSigner in HQ's HSM) certifies the
// issuing CA key of a factory site, from the PEM CSR the site's `tacline
// ca init` wrote (its key stays in the site's HSM). The CSR's signature
// must verify (proof of possession), its key be ECDSA P-256 or P-384 and
// its subject name a CN; the certificate is an issuing CA (pathLen 0) until
// NoExpiry, like the development issuing CA, so it outlives every device
// certificate (deviceNotAfter: the profile's fixed notAfter, zero when it
// is a duration). The site installs it with `tacline ca import --cert
// CERT --chain ROOT --activate`. Errors: invalid_input (field csr).
func CertifyCSR(root *x509.Certificate, rootSigner crypto.Signer, csrPEM []byte, now, deviceNotAfter time.Time) (*x509.Certificate, error) {
	block, err := pemblock.One(csrPEM, tacerr.InvalidInput, "csr", "CERTIFICATE REQUEST")
	if err != nil {
		return nil, tacerr.Prefixed("give the PEM CERTIFICATE REQUEST `tacline ca init` wrote at the site", err, tacerr.InvalidInput)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.InvalidInput, err, "csr")
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, tacerr.Wrap(tacerr.InvalidInput, err, "csr: its signature does not verify (no proof that the site holds the key)")
	}
	switch c := CurveName(csr.PublicKey); c {
	case "P-256", "P-384":
	default:
		return nil, tacerr.Field(tacerr.InvalidInput, "csr", "the key is %q: an issuing CA key is ECDSA P-256 or P-384", c)
	}
	if csr.Subject.CommonName == "" {
		return nil, tacerr.Field(tacerr.InvalidInput, "csr", "the subject names no CN")
	}
	v := UntilNoExpiry(now)
	if err := checkCoversDevices(v.NotAfter, deviceNotAfter); err != nil {
		return nil, err
	}
	return IssuingCA(root, rootSigner, csr.PublicKey, csr.Subject, v)
}
