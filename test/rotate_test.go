package test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tacline/tacline/api"
	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/verify"
	"github.com/tacline/tacline/verify/online"
)

// TestRotateWhileServing runs `tacline serve` as a process and `tacline ca
// rotate --dev` as another while stations provision: the running server
// picks the new issuer up by itself (provisioning.issuer_refresh) and, in a
// second round with a long interval, on SIGHUP. Requests in flight during
// the switch complete with a consistent issuer; new devices chain to the
// new issuing CA; earlier devices still pass the authenticity check and
// appear in their old issuer's CRL once revoked; a request id from before
// the rotation replays its original certificate; `tacline ca activate`
// makes the second issuer active again (an unknown key id is refused).
func TestRotateWhileServing(t *testing.T) {
	for _, d := range []store.Dialect{store.SQLite, store.Postgres} {
		t.Run(string(d), func(t *testing.T) { testRotate(t, d) })
	}
}

// rotation is one test run's environment and server.
type rotation struct {
	t       *testing.T
	ctx     context.Context
	env     *devenv.Env
	creds   *factory.Creds
	roots   *x509.CertPool
	proc    *devenv.Proc
	logPath string
	n       int
}

func testRotate(t *testing.T, d store.Dialect) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env := setupEnv(t, ctx, d, 2)
	var err error
	r := &rotation{t: t, ctx: ctx, env: env, logPath: filepath.Join(env.Dir, "server.log")}
	if r.creds, err = factory.LoadCreds(env.CredsDir, 0); err != nil {
		t.Fatal(err)
	}
	if r.roots, err = loadRoots(r.creds.RootsFile); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if r.proc != nil {
			r.proc.Kill()
		}
		if t.Failed() {
			logTail(t, r.logPath, 40)
		}
	})
	setProvisioning(t, env.ConfigPath, map[string]string{"issuer_refresh": "200ms"})
	r.start()
	st0, st1 := r.client(0), r.client(1)
	defer st0.Close()
	defer st1.Close()

	// Before the rotation: devices under the first issuer.
	type made struct {
		req  wire.ProvisionRequest
		resp *wire.ProvisionResponse
		dev  *factory.Device
	}
	var early []made
	for range 3 {
		req, resp, dev := r.provision(st0, 0)
		early = append(early, made{req, resp, dev})
	}
	oldKey := r.issuerOf(early[0].resp)

	// Station 1 provisions without a pause while the rotation runs.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var during []*wire.ProvisionResponse
	var duringErr error
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, resp, _, err := r.tryProvision(st1, 1)
			if err != nil {
				duringErr = err
				return
			}
			during = append(during, resp)
		}
	})
	newKey := r.rotate("tacline-device-ca-2")
	if newKey == oldKey {
		t.Fatalf("ca rotate reported the old key id %s", oldKey)
	}
	r.waitIssuer(st0, 0, newKey)
	close(stop)
	wg.Wait()
	if duringErr != nil {
		t.Fatalf("provisioning during the rotation: %v", duringErr)
	}
	if len(during) == 0 {
		t.Fatal("station 1 provisioned nothing during the rotation")
	}
	for _, resp := range during {
		if k := r.issuerOf(resp); k != oldKey && k != newKey {
			t.Errorf("device %s provisioned during the rotation is issued under %s, neither %s nor %s", resp.DeviceSerial, k, oldKey, newKey)
		}
	}

	// After: new devices chain to the new issuing CA.
	for range 2 {
		_, resp, _ := r.provision(st1, 1)
		if k := r.issuerOf(resp); k != newKey {
			t.Fatalf("device %s after the rotation issued under %s, want %s", resp.DeviceSerial, k, newKey)
		}
	}
	// A request from before the rotation replays its original certificate.
	replayed, err := st0.Provision(ctx, early[1].req)
	if err != nil {
		t.Fatalf("replay of %s: %v", early[1].req.RequestID, err)
	}
	if replayed.Certificate != early[1].resp.Certificate || replayed.CertificateSerial != early[1].resp.CertificateSerial ||
		strings.Join(replayed.IMEIs, ",") != strings.Join(early[1].resp.IMEIs, ",") || r.issuerOf(replayed) != oldKey {
		t.Fatalf("replay of %s after the rotation: certificate %s IMEIs %v, first answer %s %v",
			early[1].req.RequestID, replayed.CertificateSerial, replayed.IMEIs, early[1].resp.CertificateSerial, early[1].resp.IMEIs)
	}
	// Earlier devices still pass the authenticity check.
	regulator, err := devenv.RoleClient(env, "regulator")
	if err != nil {
		t.Fatal(err)
	}
	if v := r.check(regulator, early[0].resp, early[0].dev); v != verify.Genuine {
		t.Fatalf("authenticity check of early device %s after the rotation: %s, want genuine", early[0].resp.DeviceSerial, v)
	}
	// Revoked after the rotation, an early device is in the old issuer's
	// CRL, signed by the old issuing CA.
	operator := r.roleClient("operator")
	defer operator.Close()
	if _, err := operator.Revoke(ctx, early[2].resp.DeviceSerial, wire.RevokeRequest{Reason: "stolen"}); err != nil {
		t.Fatalf("revoke %s: %v", early[2].resp.DeviceSerial, err)
	}
	oldCA := parseCert(t, early[2].resp.Chain)
	deadline := time.Now().Add(30 * time.Second)
	for {
		crl := r.crl(regulator, oldKey, oldCA)
		if listed(crl, early[2].resp.CertificateSerial) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the CRL of the old issuer %s does not list revoked certificate %s after 30s", oldKey, early[2].resp.CertificateSerial)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if v := r.check(regulator, early[2].resp, early[2].dev); v == verify.Genuine {
		t.Fatalf("authenticity check of revoked device %s: genuine", early[2].resp.DeviceSerial)
	}
	_, latest, _ := r.provision(st1, 1)
	r.crl(regulator, newKey, parseCert(t, latest.Chain))

	// Second round: a long poll interval, so only SIGHUP can make the
	// server see the next rotation.
	if err := r.proc.Stop(30 * time.Second); err != nil {
		t.Fatalf("stop the server: %v", err)
	}
	r.proc = nil
	setProvisioning(t, env.ConfigPath, map[string]string{"issuer_refresh": "1h"})
	r.start()
	st0.Close()
	st0 = r.client(0)
	thirdKey := r.rotate("tacline-device-ca-3")
	_, resp, _ := r.provision(st0, 0)
	if k := r.issuerOf(resp); k != newKey {
		t.Fatalf("before SIGHUP (issuer_refresh 1h) a device was issued under %s, want still %s", k, newKey)
	}
	if err := r.proc.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	r.waitIssuer(st0, 0, thirdKey)
	// `ca activate` makes the second issuer, still recorded, active again;
	// a key id no issuer has is refused.
	if res := tacline(t, time.Minute, "--config", env.ConfigPath, "ca", "activate", "--key-id", "00ff"); res.code == 0 || !strings.Contains(res.stderr, "not_found") {
		t.Fatalf("ca activate of an unknown key id exited %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	res := tacline(t, time.Minute, "--config", env.ConfigPath, "ca", "activate", "--key-id", newKey)
	if m := rotatedKey.FindStringSubmatch(res.stdout); res.code != 0 || m == nil || m[1] != newKey {
		t.Fatalf("ca activate --key-id %s exited %d\n%s\n%s", newKey, res.code, res.stdout, res.stderr)
	}
	if err := r.proc.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	r.waitIssuer(st0, 0, newKey)
	if err := r.proc.Stop(30 * time.Second); err != nil {
		t.Fatalf("stop the server: %v", err)
	}
	r.proc = nil
	if res := tacline(t, time.Minute, "--config", env.ConfigPath, "ledger", "check"); res.code != 0 {
		t.Fatalf("tacline ledger check exited %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	log, _ := os.ReadFile(r.logPath)
	if !bytes.Contains(log, []byte("active device issuer switched")) {
		t.Errorf("the server log does not report the switch")
	}
}

func (r *rotation) start() {
	r.t.Helper()
	p, err := devenv.StartServer(r.ctx, taclineBin, r.env.ConfigPath, r.logPath)
	if err != nil {
		r.t.Fatalf("start the server: %v", err)
	}
	r.proc = p
}

func (r *rotation) client(i int) *factory.Client {
	r.t.Helper()
	sc := r.creds.Stations[i]
	c, err := factory.NewClient(factory.ClientConfig{ServerURL: r.proc.URL, CertFile: sc.CertFile, KeyFile: sc.KeyFile, CAFile: r.creds.ServerCAFile})
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

func (r *rotation) roleClient(role string) *factory.Client {
	r.t.Helper()
	dir := filepath.Join(r.env.IdentitiesDir, "person-"+role)
	c, err := factory.NewClient(factory.ClientConfig{ServerURL: r.proc.URL, CertFile: filepath.Join(dir, "cert.pem"),
		KeyFile: filepath.Join(dir, "key.pem"), CAFile: r.creds.ServerCAFile})
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

// rmu serialises the device counter between the background station and
// the test's own requests.
var rmu sync.Mutex

// tryProvision provisions a new device at station i.
func (r *rotation) tryProvision(c *factory.Client, i int) (wire.ProvisionRequest, *wire.ProvisionResponse, *factory.Device, error) {
	rmu.Lock()
	r.n++
	n := r.n
	rmu.Unlock()
	sc := r.creds.Stations[i]
	dev, err := factory.NewDevice(fmt.Sprintf("RT-%d-%04d", i, n))
	if err != nil {
		return wire.ProvisionRequest{}, nil, nil, err
	}
	csr, err := dev.CSR()
	if err != nil {
		return wire.ProvisionRequest{}, nil, nil, err
	}
	req := wire.ProvisionRequest{RequestID: factory.NewRequestID(), DeviceSerial: dev.Serial(), Product: sc.Product, Pool: sc.Pool, CSR: string(csr)}
	resp, err := c.Provision(r.ctx, req)
	if err != nil {
		return req, nil, nil, fmt.Errorf("provision %s: %w", req.DeviceSerial, err)
	}
	return req, resp, dev, nil
}

func (r *rotation) provision(c *factory.Client, i int) (wire.ProvisionRequest, *wire.ProvisionResponse, *factory.Device) {
	r.t.Helper()
	req, resp, dev, err := r.tryProvision(c, i)
	if err != nil {
		r.t.Fatal(err)
	}
	return req, resp, dev
}

// issuerOf checks a response's certificate against its chain and the device
// roots and returns the key id of the issuing CA that signed it.
func (r *rotation) issuerOf(resp *wire.ProvisionResponse) string {
	r.t.Helper()
	cert := parseCert(r.t, resp.Certificate)
	chain := parseCerts(r.t, resp.Chain)
	inter := x509.NewCertPool()
	for _, c := range chain {
		inter.AddCert(c)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: r.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		r.t.Fatalf("certificate of %s does not chain to the device root: %v", resp.DeviceSerial, err)
	}
	if err := cert.CheckSignatureFrom(chain[0]); err != nil {
		r.t.Fatalf("certificate of %s is not signed by the first certificate of its chain: %v", resp.DeviceSerial, err)
	}
	if aki, ski := hex.EncodeToString(cert.AuthorityKeyId), hex.EncodeToString(chain[0].SubjectKeyId); aki != ski {
		r.t.Fatalf("certificate of %s: authority key id %s, chain's issuing CA %s", resp.DeviceSerial, aki, ski)
	}
	return hex.EncodeToString(chain[0].SubjectKeyId)
}

var rotatedKey = regexp.MustCompile(`issuer \S+ \(key ([0-9a-f]+)\) is now active`)

// rotate runs `tacline ca rotate --dev` as its own process and returns the
// new issuer's key id.
func (r *rotation) rotate(label string) string {
	r.t.Helper()
	res := tacline(r.t, time.Minute, "--config", r.env.ConfigPath, "ca", "rotate", "--dev", "--label", label)
	m := rotatedKey.FindStringSubmatch(res.stdout)
	if res.code != 0 || m == nil {
		r.t.Fatalf("tacline ca rotate --dev exited %d\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	return m[1]
}

// waitIssuer provisions devices at station i until one is issued under
// keyID (deadline 30s): the server has switched.
func (r *rotation) waitIssuer(c *factory.Client, i int, keyID string) {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, resp, _ := r.provision(c, i)
		if r.issuerOf(resp) == keyID {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("the running server did not issue under the new issuer %s within 30s", keyID)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// check runs a challenge and an authenticity check of a device answering
// with its own key, as the regulator, and returns the verdict.
func (r *rotation) check(c *http.Client, resp *wire.ProvisionResponse, dev *factory.Device) verify.Verdict {
	r.t.Helper()
	var ch online.Challenge
	r.postJSON(c, r.proc.URL+api.PathChallenges, nil, &ch)
	nonce, err := hex.DecodeString(ch.Nonce)
	if err != nil {
		r.t.Fatal(err)
	}
	sig, err := dev.SignChallenge(nonce)
	if err != nil {
		r.t.Fatal(err)
	}
	var res verify.Result
	r.postJSON(c, r.proc.URL+api.PathVerify, verify.Request{IMEI: resp.IMEIs[0], Chain: resp.Certificate + resp.Chain, Nonce: ch.Nonce,
		Signature: base64.StdEncoding.EncodeToString(sig)}, &res)
	return res.Verdict
}

func (r *rotation) postJSON(c *http.Client, url string, body, out any) {
	r.t.Helper()
	var rd io.Reader = http.NoBody
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			r.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(r.ctx, http.MethodPost, url, rd)
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		r.t.Fatalf("POST %s: %s: %s", url, resp.Status, data)
	}
	if err := json.Unmarshal(data, out); err != nil {
		r.t.Fatalf("POST %s: %v: %s", url, err, data)
	}
}

// crl fetches an issuer's CRL from the server and checks it is signed by
// issuerCA.
func (r *rotation) crl(c *http.Client, keyID string, issuerCA *x509.Certificate) *x509.RevocationList {
	r.t.Helper()
	req, err := http.NewRequestWithContext(r.ctx, http.MethodGet, r.proc.URL+"/v1/crl/"+keyID+".crl", nil)
	if err != nil {
		r.t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		r.t.Fatalf("GET the CRL of %s: %s: %s", keyID, resp.Status, data)
	}
	l, err := x509.ParseRevocationList(data)
	if err != nil {
		r.t.Fatalf("CRL of %s: %v", keyID, err)
	}
	if err := l.CheckSignatureFrom(issuerCA); err != nil {
		r.t.Fatalf("CRL of %s is not signed by its issuing CA: %v", keyID, err)
	}
	return l
}

func listed(l *x509.RevocationList, serialHex string) bool {
	for _, e := range l.RevokedCertificateEntries {
		if hex.EncodeToString(e.SerialNumber.Bytes()) == serialHex {
			return true
		}
	}
	return false
}

func parseCerts(t *testing.T, s string) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for rest := []byte(s); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		t.Fatalf("no certificate in %q", s)
	}
	return out
}

func parseCert(t *testing.T, s string) *x509.Certificate { return parseCerts(t, s)[0] }
