// Package stepcadev runs a real step-ca (built from the pinned
// github.com/smallstep/certificates module into bin/step-ca) for tests, the
// demo and the benchmark: a root made in memory (development only), the
// intermediate key generated in a SoftHSM2 token and used by step-ca through
// its own PKCS#11 KMS, the provisioners asked for, a bbolt database, a
// loopback port. Start returns once /health answers.
package stepcadev

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/tacerr"
)

// IntermediateLabel is the label of step-ca's intermediate key in the token.
const IntermediateLabel = "stepca-intermediate"

// Options configure a step-ca.
type Options struct {
	Dir    string     // where ca.json, the certificates, the database and the log go
	Binary string     // the step-ca executable
	HSM    hsm.Config // the token that holds the intermediate key (PIN from a file)
	Token  *hsm.Token // that token, open in this process
	// Provisioners for authority.provisioners (each JSON-marshalled).
	Provisioners []any
}

// CA is a running step-ca.
type CA struct {
	URL        string
	Dir        string
	RootFile   string // root_ca.crt
	IssuerFile string // intermediate_ca.crt
	Root       *x509.Certificate
	Issuer     *x509.Certificate

	binary  string
	rootKey crypto.Signer // signs a rotated intermediate (RotateIntermediate)
	token   *hsm.Token
	env     []string
	conf    string
	doc     map[string]any
	log     string
	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
}

// Binary returns bin/step-ca under the module root found above dir (or
// $TACLINE_STEPCA_BIN), building it there first when it is missing, with
// the Makefile's command.
func Binary(dir string, logf func(string, ...any)) (string, error) {
	if p := os.Getenv("TACLINE_STEPCA_BIN"); p != "" {
		return p, nil
	}
	root, err := moduleRoot(dir)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, "bin", "step-ca")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	logf("building %s once (`make stepca` does the same)", bin)
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	tmp := bin + fmt.Sprintf(".tmp%d", os.Getpid())
	cmd := exec.Command("go", "build", "-tags", "noyubikey", "-o", tmp, "github.com/smallstep/certificates/cmd/step-ca")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", tacerr.Wrap(tacerr.Unavailable, err, "build step-ca: %s", out)
	}
	return bin, os.Rename(tmp, bin)
}

func moduleRoot(d string) (string, error) {
	d, err := filepath.Abs(d)
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", tacerr.New(tacerr.Unavailable, "no bin/step-ca: run `make stepca` in tacline's source tree or set TACLINE_STEPCA_BIN")
		}
		d = filepath.Dir(d)
	}
}

// Start writes a ca.json and starts step-ca; see the package comment.
func Start(ctx context.Context, o Options) (*CA, error) {
	dir := o.Dir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	// Valid until 99991231235959Z like tacline's development CAs, so that
	// device certificates of the default profile (no expiry) fit inside.
	v := ca.Validity{NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)}
	root, err := ca.SelfSignedRoot(rootKey, pkix.Name{Organization: []string{"Acme Step"}, CommonName: "Acme Step Root CA"}, v)
	if err != nil {
		return nil, err
	}
	if _, err := o.Token.GenerateKey(IntermediateLabel, hsm.ECP256); err != nil {
		return nil, fmt.Errorf("generate step-ca's intermediate key in the HSM: %w", err)
	}
	s, err := o.Token.Signer(IntermediateLabel)
	if err != nil {
		return nil, err
	}
	inter, err := ca.IssuingCA(root, rootKey, s.Public(), pkix.Name{Organization: []string{"Acme Step"}, CommonName: "Acme Step Intermediate CA"}, v)
	if err != nil {
		return nil, err
	}
	c := &CA{Dir: dir, RootFile: filepath.Join(dir, "root_ca.crt"), IssuerFile: filepath.Join(dir, "intermediate_ca.crt"),
		Root: root, Issuer: inter, binary: o.Binary, rootKey: rootKey, token: o.Token, conf: filepath.Join(dir, "ca.json"), log: filepath.Join(dir, "step-ca.log")}
	for f, cert := range map[string]*x509.Certificate{c.RootFile: root, c.IssuerFile: inter} {
		if err := os.WriteFile(f, ca.ChainPEM(cert), 0o644); err != nil {
			return nil, err
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	c.URL = fmt.Sprintf("https://127.0.0.1:%d", port)
	pinFile := strings.TrimPrefix(o.HSM.PIN, "file:")
	if pinFile == o.HSM.PIN {
		return nil, tacerr.Field(tacerr.InvalidConfig, "hsm.pin", "step-ca reads the PIN from a file: use file:PATH, got %s", o.HSM)
	}
	provs := o.Provisioners
	if provs == nil {
		provs = []any{}
	}
	c.doc = map[string]any{
		"root":     c.RootFile,
		"crt":      c.IssuerFile,
		"key":      "pkcs11:object=" + IntermediateLabel,
		"kms":      map[string]any{"type": "pkcs11", "uri": fmt.Sprintf("pkcs11:module-path=%s;token=%s?pin-source=%s", o.HSM.Module, o.HSM.TokenLabel, pinFile)},
		"address":  fmt.Sprintf("127.0.0.1:%d", port),
		"dnsNames": []string{"127.0.0.1", "localhost"},
		"logger":   map[string]any{"format": "text"},
		"db":       map[string]any{"type": "bbolt", "dataSource": filepath.Join(dir, "db")},
		"authority": map[string]any{
			"provisioners": provs,
			"backdate":     "0s",
		},
		"tls": map[string]any{"minVersion": 1.2, "maxVersion": 1.3},
		"crl": map[string]any{"enabled": true, "generateOnRevoke": true, "cacheDuration": "24h"},
	}
	if err := c.writeConf(); err != nil {
		return nil, err
	}
	c.env = append(os.Environ(), "SOFTHSM2_CONF="+o.HSM.SoftHSMConf, "STEPPATH="+dir, "HOME="+dir)
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *CA) writeConf() error {
	b, err := json.MarshalIndent(c.doc, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(c.conf, b, 0o600)
}

// RotateIntermediate gives step-ca a new intermediate CA under the same
// root, its key made in the token under label, written to
// intermediate_ca-<label>.crt (IssuerFile and Issuer from now on), and
// restarts step-ca with it (same database, port and provisioners), as an
// operator rotates step-ca's intermediate.
func (c *CA) RotateIntermediate(ctx context.Context, label string) error {
	if _, err := c.token.GenerateKey(label, hsm.ECP256); err != nil {
		return fmt.Errorf("generate step-ca's new intermediate key in the HSM: %w", err)
	}
	s, err := c.token.Signer(label)
	if err != nil {
		return err
	}
	v := ca.Validity{NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)}
	inter, err := ca.IssuingCA(c.Root, c.rootKey, s.Public(), pkix.Name{Organization: []string{"Acme Step"}, CommonName: "Acme Step Intermediate CA " + label}, v)
	if err != nil {
		return err
	}
	file := filepath.Join(c.Dir, "intermediate_ca-"+label+".crt")
	if err := os.WriteFile(file, ca.ChainPEM(inter), 0o644); err != nil {
		return err
	}
	c.Stop()
	c.IssuerFile, c.Issuer = file, inter
	c.doc["crt"], c.doc["key"] = file, "pkcs11:object="+label
	if err := c.writeConf(); err != nil {
		return err
	}
	return c.Start(ctx)
}

// SetProvisioners replaces the provisioners and restarts step-ca.
func (c *CA) SetProvisioners(ctx context.Context, provs []any) error {
	c.Stop()
	c.doc["authority"].(map[string]any)["provisioners"] = provs
	if err := c.writeConf(); err != nil {
		return err
	}
	return c.Start(ctx)
}

// Start starts step-ca (again, after Stop: same configuration, port and
// database) and waits for /health.
func (c *CA) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil {
		return nil
	}
	logf, err := os.OpenFile(c.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.binary, c.conf)
	cmd.Env = c.env
	cmd.Dir = c.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return tacerr.Wrap(tacerr.Unavailable, err, "start step-ca")
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(done) }()
	c.cmd, c.done = cmd, done
	if err := c.waitHealthy(ctx, done); err != nil {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
		c.cmd = nil
		return tacerr.Wrap(tacerr.Unavailable, err, "step-ca did not become healthy; its log:\n%s", c.Log())
	}
	return nil
}

// Stop kills step-ca (SIGKILL: as abrupt as an outage) and waits for it.
func (c *CA) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
	c.cmd = nil
}

// Pid is step-ca's process id (0 when stopped).
func (c *CA) Pid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// Log returns step-ca's output so far.
func (c *CA) Log() string {
	b, _ := os.ReadFile(c.log)
	return string(b)
}

func (c *CA) waitHealthy(ctx context.Context, done chan struct{}) error {
	pool := x509.NewCertPool()
	pool.AddCert(c.Root)
	cl := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer cl.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var last error
	for {
		select {
		case <-done:
			return fmt.Errorf("step-ca exited")
		case <-ctx.Done():
			return fmt.Errorf("no healthy answer within 60s: %v", last)
		case <-time.After(100 * time.Millisecond):
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+"/health", nil)
		resp, err := cl.Do(req)
		if err != nil {
			last = err
			continue
		}
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK && strings.Contains(buf.String(), "ok") {
			return nil
		}
		last = fmt.Errorf("HTTP %d: %s", resp.StatusCode, buf.String())
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
