package stepca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smallstep/certificates/api"
	"github.com/smallstep/certificates/ca"
	"github.com/smallstep/cli-utils/token"
	"go.step.sm/crypto/jose"
	"go.step.sm/crypto/pemutil"
	"go.step.sm/crypto/randutil"

	"github.com/tacline/tacline/internal/atomicfile"
	"github.com/tacline/tacline/internal/pemblock"
	"github.com/tacline/tacline/tacerr"
)

// StationURNPrefix starts the URI SAN that names a station
// (urn:tacline:station:<ID>).
const StationURNPrefix = "urn:tacline:station:"

// StationTemplate is the X.509 template of the provisioner that issues
// station identities. The station id is the token's subject (chosen by the
// operator who made the token, never by the CSR): it becomes the common
// name and the URI SAN urn:tacline:station:<ID> that tacline maps to the
// station (server.stepca_station_ca). Client authentication only.
const StationTemplate = `{
  "subject": {"commonName": {{ toJson .Subject.CommonName }}},
  "uris": {{ toJson (print "urn:tacline:station:" .Subject.CommonName) }},
  "keyUsage": ["digitalSignature"],
  "extKeyUsage": ["clientAuth"]
}`

// StationProvisioner returns the JWK provisioner, named name, that issues
// station identities with StationTemplate for tokens signed by the key
// whose public half is pub (the operator's provisioner key), valid for
// life (24h when 0) and renewable by the station itself.
func StationProvisioner(name string, pub crypto.PublicKey, life time.Duration) (Provisioner, error) {
	jwk, err := publicJWK(pub)
	if err != nil {
		return Provisioner{}, err
	}
	if life == 0 {
		life = 24 * time.Hour
	}
	minDur := time.Second
	if life > 10*time.Minute {
		minDur = 5 * time.Minute
	}
	return Provisioner{Type: "JWK", Name: name, Key: jwk,
		Claims: map[string]any{
			"minTLSCertDuration":         minDur.String(),
			"maxTLSCertDuration":         (2 * life).String(),
			"defaultTLSCertDuration":     life.String(),
			"disableSmallstepExtensions": true,
		},
		Options: map[string]any{"x509": map[string]any{"template": StationTemplate}},
	}, nil
}

// StationToken makes a one-time token for `tacline station bootstrap`, as
// `step ca token <ID> --provisioner NAME` does: subject and SAN are the
// station id; key is the provisioner's private key.
func StationToken(caURL, provisioner string, key crypto.Signer, station string, ttl time.Duration) (string, error) {
	jti, err := randutil.Hex(32)
	if err != nil {
		return "", err
	}
	now := time.Now()
	cl, err := token.NewClaims(token.WithJWTID(jti), token.WithIssuer(provisioner), token.WithAudience(caURL+"/1.0/sign"),
		token.WithSubject(station), token.WithSANS([]string{station}), token.WithValidity(now.Add(-time.Minute), now.Add(ttl)))
	if err != nil {
		return "", err
	}
	return cl.Sign(jose.ES256, key)
}

// StationFiles are what Bootstrap writes into a station's directory.
const (
	StationCertFile = "cert.pem"    // the station certificate, then step-ca's intermediate
	StationKeyFile  = "key.pem"     // its private key (0600)
	StationCAFile   = "stepca.json" // where to renew: step-ca's URL and root
)

// stationCA is the content of StationCAFile.
type stationCA struct {
	URL  string `json:"ca_url"`
	Root string `json:"root"`
}

// Bootstrap obtains a station identity from step-ca with a one-time token
// (a new P-256 key made here, its CSR signed by step-ca through the `ca`
// client) and writes it into dir: cert.pem, key.pem and stepca.json (for
// renewal). It returns the certificate.
func Bootstrap(ctx context.Context, caURL, rootFile, ott, dir string) (*x509.Certificate, error) {
	client, err := newClient(caURL, rootFile, stationTimeout)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.InvalidInput, err, "step-ca client for %s with root %s", caURL, rootFile)
	}
	req, key, err := ca.CreateSignRequest(ott)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.InvalidInput, err, "the token is not a step-ca one-time token")
	}
	// The station the operator made the token for: its subject, which
	// the CSR carries as its common name.
	station := req.CsrPEM.Subject.CommonName
	if station == "" {
		return nil, tacerr.Field(tacerr.InvalidInput, "token", "the one-time token has no subject: make it for the station (`step ca token <STATION-ID> --provisioner NAME`)")
	}
	// The token is spent when step-ca signs: a directory the identity
	// cannot be written into is refused first, with the token unused.
	if err := writableDir(dir); err != nil {
		return nil, err
	}
	resp, err := client.SignWithContext(ctx, req)
	if err != nil {
		return nil, classify(err, nil)
	}
	rootCert, err := readCert(rootFile, "root")
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(rootCert)
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, tacerr.New(tacerr.Internal, "the station key %T is not a signer", key)
	}
	if err := checkIdentity(resp, signer.Public(), roots, station); err != nil {
		return nil, err
	}
	root, err := filepath.Abs(rootFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := pemutil.Serialize(key)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Internal, err, "encode the station key")
	}
	b, _ := json.MarshalIndent(stationCA{URL: caURL, Root: root}, "", "  ")
	if err := writeIdentity(dir, pem.EncodeToMemory(keyPEM), chainPEM(resp), append(b, '\n')); err != nil {
		return nil, err
	}
	return resp.ServerPEM.Certificate, nil
}

// checkIdentity checks a station certificate step-ca answered before
// anything is written: it names station (common name and the one URI SAN
// urn:tacline:station:<station>, as StationTemplate writes them), certifies
// pub (the station's key) and chains to roots for client authentication
// (code upstream_refused).
func checkIdentity(resp *api.SignResponse, pub crypto.PublicKey, roots *x509.CertPool, station string) error {
	leaf := resp.ServerPEM.Certificate
	if leaf == nil {
		return tacerr.New(tacerr.UpstreamRefused, "step-ca answered no certificate; nothing written")
	}
	var uris []string
	for _, u := range leaf.URIs {
		uris = append(uris, u.String())
	}
	if leaf.Subject.CommonName != station || len(uris) != 1 || uris[0] != StationURNPrefix+station {
		return tacerr.New(tacerr.UpstreamRefused,
			"step-ca's certificate (serial %x) names common name %q and URIs %q, not station %q (common name and URI %s%s, as the station template writes them from the token's subject): check the provisioner's template in step-ca; nothing written",
			leaf.SerialNumber, leaf.Subject.CommonName, uris, station, StationURNPrefix, station)
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return tacerr.Wrap(tacerr.Internal, err, "encode the station key")
	}
	if !bytes.Equal(spki, leaf.RawSubjectPublicKeyInfo) {
		return tacerr.New(tacerr.UpstreamRefused, "step-ca's certificate %q (serial %x) does not certify the station's key; nothing written", leaf.Subject, leaf.SerialNumber)
	}
	inter := x509.NewCertPool()
	for _, c := range append(slices.Clone(resp.CertChainPEM), resp.CaPEM) {
		if c.Certificate != nil && !c.Certificate.Equal(leaf) {
			inter.AddCert(c.Certificate)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return tacerr.Wrap(tacerr.UpstreamRefused, err, "step-ca's certificate %q (serial %x) does not chain to step-ca's root for client authentication; nothing written", leaf.Subject, leaf.SerialNumber)
	}
	return nil
}

func chainPEM(resp *api.SignResponse) []byte {
	var out []byte
	certs := resp.CertChainPEM
	if len(certs) == 0 {
		certs = []api.Certificate{resp.ServerPEM, resp.CaPEM}
	}
	for _, c := range certs {
		if c.Certificate != nil {
			out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
		}
	}
	return out
}

// Test hook: a step of writing a station identity reached.
var writeStep = func(string) {}

// writeIdentity replaces the station identity in dir, key, certificate
// chain and stepca.json, as a whole (atomicfile.WriteSet): a reader, or
// the station after a crash, finds the old identity or the new one, never
// a key beside another key's certificate.
func writeIdentity(dir string, keyPEM, chain, caJSON []byte) error {
	writeStep("checked")
	err := atomicfile.WriteSet(dir, []atomicfile.File{
		{Name: StationKeyFile, Data: keyPEM, Perm: 0o600},
		{Name: StationCertFile, Data: chain, Perm: 0o644},
		{Name: StationCAFile, Data: caJSON, Perm: 0o644},
	})
	if err != nil {
		return tacerr.Field(tacerr.OutputFailed, "dir", "write the station identity into %s: %v", dir, err)
	}
	writeStep("written")
	return nil
}

// writableDir makes the station's directory dir if it does not exist and
// checks that a file can be created in it: output_failed on dir otherwise,
// saying that the one-time token was not used.
func writableDir(dir string) error {
	fail := func(err error) error {
		return tacerr.Field(tacerr.OutputFailed, "dir", "the station identity cannot be written into %s: %v; nothing was sent to step-ca and the one-time token is still unused: fix the directory (or choose another) and run the bootstrap again", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(err)
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return fail(err)
	}
	name := f.Name()
	err = f.Close()
	if rerr := os.Remove(name); err == nil {
		err = rerr
	}
	if err != nil {
		return fail(err)
	}
	return nil
}

// Renewer keeps a bootstrapped station identity fresh while the station
// client runs: it renews the certificate at step-ca (mutual TLS with the
// current one, same key) once two thirds of its life have passed, writes
// it to the station's directory and switches to it for new TLS
// connections; connections already open finish with the old one, which is
// still valid, so no request fails at the switch. It is safe for
// concurrent use.
type Renewer struct {
	dir    string
	keyPEM []byte // the station key and stepca.json as loaded: renewal
	caJSON []byte // writes them back with the new certificate, as one set
	client *ca.Client
	roots  *x509.CertPool
	cur    atomic.Pointer[tls.Certificate]
	mu     sync.Mutex // one renewal at a time
	// OnRenew, if set, is called after each renewal with the new leaf.
	OnRenew func(*x509.Certificate)
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Timeout bounds one renewal request (30s when 0).
	Timeout time.Duration
}

func (r *Renewer) timeout() time.Duration {
	if r.Timeout > 0 {
		return r.Timeout
	}
	return stationTimeout
}

// IsBootstrapped reports whether dir holds a step-ca station identity.
func IsBootstrapped(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, StationCAFile))
	return err == nil
}

// NewRenewer loads the identity Bootstrap wrote into dir, all of it from
// one generation of the set (atomicfile.SetDir), and checks it: the key
// must be the certificate's and the certificate must chain to the root in
// stepca.json, or the station would present an identity that fails, or
// renew at a step-ca that never issued it.
func NewRenewer(dir string) (*Renewer, error) {
	set, err := atomicfile.SetDir(dir)
	if err != nil {
		return nil, tacerr.Field(tacerr.InvalidInput, "dir", "station identity in %s: %v; run `tacline station bootstrap` again with a new one-time token", dir, err)
	}
	b, err := os.ReadFile(filepath.Join(set, StationCAFile))
	if err != nil {
		return nil, tacerr.Field(tacerr.InvalidInput, "dir", "%s holds no step-ca station identity (run `tacline station bootstrap`): %v", dir, err)
	}
	var sc stationCA
	if err := json.Unmarshal(b, &sc); err != nil {
		return nil, tacerr.Field(tacerr.InvalidInput, "dir", "%s: %v", StationCAFile, err)
	}
	root, err := readCert(sc.Root, "root")
	if err != nil {
		return nil, err
	}
	client, err := newClient(sc.URL, sc.Root, stationTimeout)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.InvalidInput, err, "step-ca client for %s", sc.URL)
	}
	r := &Renewer{dir: dir, client: client, roots: x509.NewCertPool(), caJSON: b}
	r.roots.AddCert(root)
	certFile, keyFile := filepath.Join(dir, StationCertFile), filepath.Join(dir, StationKeyFile)
	chain, err := os.ReadFile(filepath.Join(set, StationCertFile))
	if err == nil {
		r.keyPEM, err = os.ReadFile(filepath.Join(set, StationKeyFile))
	}
	if err != nil {
		return nil, tacerr.Field(tacerr.InvalidInput, "dir", "station identity in %s: %v", dir, err)
	}
	if _, err := pemblock.Decode(chain, tacerr.InvalidInput, "dir", "CERTIFICATE"); err != nil {
		return nil, tacerr.Prefixed(certFile, err, tacerr.InvalidInput)
	}
	if _, err := pemblock.One(r.keyPEM, tacerr.InvalidInput, "dir", pemblock.PrivateKeyTypes...); err != nil {
		return nil, tacerr.Prefixed(keyFile, err, tacerr.InvalidInput)
	}
	c, err := tls.X509KeyPair(chain, r.keyPEM)
	if err != nil {
		return nil, tacerr.Field(tacerr.InvalidInput, "dir",
			"the station identity in %s is not a matching pair: %s and %s do not load together (%v); the files were replaced in part (by hand, or an interrupted bootstrap of an older tacline): run `tacline station bootstrap` again with a new one-time token",
			dir, keyFile, certFile, err)
	}
	inter := x509.NewCertPool()
	for _, der := range c.Certificate[1:] {
		if ic, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(ic)
		}
	}
	if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: r.roots, Intermediates: inter, CurrentTime: c.Leaf.NotBefore.Add(time.Second),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, tacerr.Field(tacerr.InvalidInput, "dir",
			"the station certificate %s does not chain to the step-ca root %s that %s names (%v): they come from different bootstraps; run `tacline station bootstrap` again with a new one-time token",
			certFile, sc.Root, filepath.Join(dir, StationCAFile), err)
	}
	r.cur.Store(&c)
	return r, nil
}

// Leaf is the current certificate.
func (r *Renewer) Leaf() *x509.Certificate { return r.cur.Load().Leaf }

// GetClientCertificate is for tls.Config: the current certificate.
func (r *Renewer) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return r.cur.Load(), nil
}

func (r *Renewer) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// RenewAt is when the current certificate is due: two thirds into its life.
func (r *Renewer) RenewAt() time.Time {
	l := r.Leaf()
	return l.NotBefore.Add(l.NotAfter.Sub(l.NotBefore) * 2 / 3)
}

// Renew renews the certificate now.
func (r *Renewer) Renew(ctx context.Context) (*x509.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.cur.Load()
	tr := &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: r.roots, Certificates: []tls.Certificate{*cur}}}
	defer tr.CloseIdleConnections()
	// The renewal's own client has no timeout: a step-ca that accepts
	// the connection and never answers would hold the renewal (and every
	// retry) until the certificate expired.
	ctx, cancel := context.WithTimeout(ctx, r.timeout())
	defer cancel()
	resp, err := r.client.RenewWithContext(ctx, guard(tr))
	if err != nil {
		return nil, classify(err, nil)
	}
	if err := checkIdentity(resp, cur.Leaf.PublicKey, r.roots, cur.Leaf.Subject.CommonName); err != nil {
		return nil, err
	}
	chain := chainPEM(resp)
	next, err := tls.X509KeyPair(chain, r.keyPEM)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.UpstreamRefused, err, "step-ca's renewed certificate does not match the station key")
	}
	if err := writeIdentity(r.dir, r.keyPEM, chain, r.caJSON); err != nil {
		return nil, err
	}
	r.cur.Store(&next)
	if r.OnRenew != nil {
		r.OnRenew(next.Leaf)
	}
	return next.Leaf, nil
}

// Run renews at two thirds of each certificate's life until ctx ends. A
// failed renewal is retried after a tenth of the remaining life (at least
// a second); errors go to logf.
func (r *Renewer) Run(ctx context.Context, logf func(string, ...any)) {
	for {
		wait := r.RenewAt().Sub(r.now())
		select {
		case <-ctx.Done():
			return
		case <-time.After(max(wait, 0)):
		}
		if _, err := r.Renew(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			retry := max(r.Leaf().NotAfter.Sub(r.now())/10, time.Second)
			logf("station certificate renewal failed, retrying in %s: %v", retry.Round(time.Second), err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(retry):
			}
		}
	}
}
