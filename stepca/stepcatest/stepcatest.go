// Package stepcatest runs a real step-ca (built from the pinned
// github.com/smallstep/certificates module into bin/step-ca) for tests: a
// root made in memory, the intermediate key generated in the test's
// SoftHSM2 token and used by step-ca through its own PKCS#11 KMS, the
// provisioners the test asks for, a bbolt database, a loopback port. Start
// returns once /health answers; the process is stopped when the test ends.
package stepcatest

import (
	"bytes"
	"context"
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
	"testing"
	"time"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/hsm"
)

// IntermediateLabel is the label of step-ca's intermediate key in the token.
const IntermediateLabel = "stepca-intermediate"

// Options configure a step-ca.
type Options struct {
	HSM   hsm.Config // the token that holds the intermediate key
	Token *hsm.Token // that token, open in the test
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

	t      testing.TB
	binary string
	env    []string
	conf   string
	log    string
	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
}

var buildOnce sync.Once

// Binary returns the step-ca executable: $TACLINE_STEPCA_BIN, or bin/step-ca
// in the module root, built there (once, with `make stepca`'s command) when
// it is missing.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("TACLINE_STEPCA_BIN"); p != "" {
		return p
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "bin", "step-ca")
	var berr error
	buildOnce.Do(func() {
		if _, err := os.Stat(bin); err == nil {
			return
		}
		t.Logf("stepcatest: building %s (once; `make stepca` does the same)", bin)
		tmp := bin + fmt.Sprintf(".tmp%d", os.Getpid())
		cmd := exec.Command("go", "build", "-tags", "noyubikey", "-o", tmp, "github.com/smallstep/certificates/cmd/step-ca")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			berr = fmt.Errorf("build step-ca: %v\n%s", err, out)
			return
		}
		berr = os.Rename(tmp, bin)
	})
	if berr != nil {
		t.Fatal(berr)
	}
	return bin
}

func moduleRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("stepcatest: no go.mod above the working directory")
		}
		d = filepath.Dir(d)
	}
}

// Start writes a ca.json and starts step-ca; see the package comment.
func Start(t testing.TB, o Options) *CA {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	v := ca.ValidFor(time.Now(), 10*365*24*time.Hour)
	root, err := ca.SelfSignedRoot(rootKey, pkix.Name{Organization: []string{"Acme Step"}, CommonName: "Acme Step Root CA"}, v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Token.GenerateKey(IntermediateLabel, hsm.ECP256); err != nil {
		t.Fatalf("generate step-ca's intermediate key in the HSM: %v", err)
	}
	s, err := o.Token.Signer(IntermediateLabel)
	if err != nil {
		t.Fatal(err)
	}
	inter, err := ca.IssuingCA(root, rootKey, s.Public(), pkix.Name{Organization: []string{"Acme Step"}, CommonName: "Acme Step Intermediate CA"}, v)
	if err != nil {
		t.Fatal(err)
	}
	c := &CA{Dir: dir, RootFile: filepath.Join(dir, "root_ca.crt"), IssuerFile: filepath.Join(dir, "intermediate_ca.crt"),
		Root: root, Issuer: inter, t: t, conf: filepath.Join(dir, "ca.json"), log: filepath.Join(dir, "step-ca.log")}
	for f, cert := range map[string]*x509.Certificate{c.RootFile: root, c.IssuerFile: inter} {
		if err := os.WriteFile(f, ca.ChainPEM(cert), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	port := freePort(t)
	c.URL = fmt.Sprintf("https://127.0.0.1:%d", port)
	pinFile := strings.TrimPrefix(o.HSM.PIN, "file:")
	if pinFile == o.HSM.PIN {
		t.Fatalf("stepcatest: the HSM PIN must come from a file, got %s", o.HSM)
	}
	provs := o.Provisioners
	if provs == nil {
		provs = []any{}
	}
	conf := map[string]any{
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
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.conf, b, 0o600); err != nil {
		t.Fatal(err)
	}
	c.env = append(os.Environ(), "SOFTHSM2_CONF="+o.HSM.SoftHSMConf, "STEPPATH="+dir, "HOME="+dir)
	c.binary = bin
	c.Start()
	t.Cleanup(c.Stop)
	return c
}

// Start starts step-ca again after Stop (same configuration, port and
// database) and waits for /health.
func (c *CA) Start() {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil {
		return
	}
	logf, err := os.OpenFile(c.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(c.binary, c.conf)
	cmd.Env = c.env
	cmd.Dir = c.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		c.t.Fatalf("start step-ca: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(done) }()
	c.cmd, c.done = cmd, done
	if err := c.waitHealthy(done); err != nil {
		c.t.Fatalf("step-ca did not become healthy: %v\n--- step-ca log ---\n%s", err, c.Log())
	}
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

// Log returns step-ca's output so far.
func (c *CA) Log() string {
	b, _ := os.ReadFile(c.log)
	return string(b)
}

func (c *CA) waitHealthy(done chan struct{}) error {
	pool := x509.NewCertPool()
	pool.AddCert(c.Root)
	cl := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer cl.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
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

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
