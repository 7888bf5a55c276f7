package devenv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tacline/tacline/api"
	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/ca/castore"
	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/factory/sim"
	"github.com/tacline/tacline/internal/pemblock"
	"github.com/tacline/tacline/server"
	"github.com/tacline/tacline/tacerr"
	"github.com/tacline/tacline/verify"
	"github.com/tacline/tacline/verify/online"
)

// AuthenticityResult is what the demo's two checks answered.
type AuthenticityResult struct {
	Genuine verify.Result // the device answering with its own key
	Clone   verify.Result // a clone: same IMEI and certificate, another key
}

// CheckAuthenticity runs the demo's authenticity checks against the server
// at serverURL as the regulator identity: the first device of
// exports/devices.ndjson answers a challenge with its own key (from
// exports/device-keys), then a clone that copied its IMEI and certificate
// but has another key answers a second challenge. It prints both verdicts
// to out.
func CheckAuthenticity(ctx context.Context, env *Env, serverURL string, out io.Writer) (*AuthenticityResult, error) {
	c, err := RoleClient(env, "regulator")
	if err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(env.ExportsDir, "devices.ndjson"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	devs, err := ReadDevices(env, f, filepath.Join(env.ExportsDir, "device-keys"), 1)
	if err != nil {
		return nil, err
	}
	dev := devs[0]
	clone, err := factory.NewDevice("clone-of-" + dev.Serial)
	if err != nil {
		return nil, err
	}
	res := &AuthenticityResult{}
	for _, step := range []struct {
		name string
		sign func([]byte) ([]byte, error)
		dst  *verify.Result
	}{
		{"the device itself", func(n []byte) ([]byte, error) { return factory.SignChallenge(dev.Key, n) }, &res.Genuine},
		{"a clone (same IMEI and certificate, another key)", clone.SignChallenge, &res.Clone},
	} {
		var ch online.Challenge
		if err := postJSON(ctx, c, serverURL+api.PathChallenges, nil, &ch); err != nil {
			return nil, err
		}
		nonce, err := hex.DecodeString(ch.Nonce)
		if err != nil {
			return nil, tacerr.Wrap(tacerr.Internal, err, "challenge nonce %q", ch.Nonce)
		}
		sig, err := step.sign(nonce)
		if err != nil {
			return nil, err
		}
		req := verify.Request{IMEI: dev.IMEIs[0], Chain: dev.ChainPEM, Nonce: ch.Nonce, Signature: base64.StdEncoding.EncodeToString(sig)}
		if err := postJSON(ctx, c, serverURL+api.PathVerify, req, step.dst); err != nil {
			return nil, err
		}
		fmt.Fprintf(out, "   %-50s IMEI %s: %s (%s)\n", step.name, dev.IMEIs[0], step.dst.Verdict, step.dst.Reasons[len(step.dst.Reasons)-1])
	}
	return res, nil
}

// RoleClient is an HTTPS client with the environment's identity of a role
// (identities/role-<role>) that trusts the server's CA.
func RoleClient(env *Env, role string) (*http.Client, error) {
	dir := filepath.Join(env.IdentitiesDir, "person-"+role)
	cert, err := pemblock.KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), tacerr.Internal, "cert", "key")
	if err != nil {
		return nil, err
	}
	pool, err := pemblock.CertPool(filepath.Join(env.CredsDir, castore.ServerCAFile), tacerr.Internal, "server_ca")
	if err != nil {
		return nil, err
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{cert}}}}, nil
}

// Device is a provisioned device with its private key (development and
// tests only: a real device's key never leaves its secure element).
type Device struct {
	Serial   string
	IMEIs    []string // 15 digits
	CertPEM  string   // the device certificate
	ChainPEM string   // the device certificate, then the CA chain
	Key      *ecdsa.PrivateKey
}

// ReadDevices reads up to max devices (max <= 0: all) from the line
// simulator's NDJSON output, their keys from keysDir/<serial>.pem and the
// CA chain from env's exports/ca-chain.pem.
func ReadDevices(env *Env, ndjson io.Reader, keysDir string, max int) ([]Device, error) {
	caChain, err := os.ReadFile(filepath.Join(env.ExportsDir, "ca-chain.pem"))
	if err != nil {
		return nil, err
	}
	var out []Device
	sc := bufio.NewScanner(ndjson)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() && (max <= 0 || len(out) < max) {
		var rec sim.DeviceRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || len(rec.IMEIs) == 0 {
			return nil, tacerr.New(tacerr.Internal, "device line %d is not a device record: %v", len(out)+1, err)
		}
		keyPEM, err := os.ReadFile(filepath.Join(keysDir, rec.DeviceSerial+".pem"))
		if err != nil {
			return nil, err
		}
		key, err := factory.ParseDeviceKey(keyPEM)
		if err != nil {
			return nil, err
		}
		out = append(out, Device{Serial: rec.DeviceSerial, IMEIs: rec.IMEIs, CertPEM: rec.Certificate, ChainPEM: rec.Certificate + string(caChain), Key: key})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, tacerr.New(tacerr.NotFound, "no device records")
	}
	return out, nil
}

// ServeInProcess runs a tacline server for env in this process on a free
// loopback port and returns it with its URL and a stop function that shuts
// it down and releases it (tests and benchmarks; the demo runs a child
// process instead).
func ServeInProcess(ctx context.Context, env *Env) (*server.Server, string, func() error, error) {
	return ServeInProcessLogging(ctx, env, slog.New(slog.DiscardHandler))
}

// ServeInProcessLogging is ServeInProcess with the server's log written
// to log.
func ServeInProcessLogging(ctx context.Context, env *Env, log *slog.Logger) (*server.Server, string, func() error, error) {
	ctx, cancel := context.WithCancel(ctx)
	cfg := *env.Config
	cfg.Server.Listen = "127.0.0.1:0"
	srv, err := server.New(ctx, &cfg, log)
	if err != nil {
		cancel()
		return nil, "", nil, err
	}
	addrc, done := make(chan string, 1), make(chan error, 1)
	go func() { done <- srv.Run(ctx, func(a string) { addrc <- a }) }()
	stop := func() error {
		cancel()
		return errors.Join(<-done, srv.Close())
	}
	select {
	case addr := <-addrc:
		return srv, "https://" + addr, stop, nil
	case err := <-done:
		cancel()
		srv.Close()
		return nil, "", nil, err
	}
}

// ProvisionDevices provisions perStation devices at every station of env
// through the server at url with the line simulator and returns them with
// their keys (written to keysDir).
func ProvisionDevices(ctx context.Context, env *Env, url string, perStation int, keysDir string) ([]Device, error) {
	creds, err := factory.LoadCreds(env.CredsDir, 0)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if _, err := sim.Simulate(ctx, sim.Config{ServerURL: url, ServerCAFile: creds.ServerCAFile, RootsFile: creds.RootsFile,
		Stations: creds.Stations, Devices: perStation, DevicesOut: &out, KeysDir: keysDir}); err != nil {
		return nil, err
	}
	return ReadDevices(env, &out, keysDir, 0)
}

// postJSON posts body (nil: no body) and decodes a 2xx JSON answer into
// out; any other answer is an error quoting the problem.
func postJSON(ctx context.Context, c *http.Client, url string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return tacerr.Wrap(tacerr.Unavailable, err, "POST %s", url)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return tacerr.New(tacerr.Internal, "POST %s: %s: %s", url, resp.Status, strings.TrimSpace(string(data)))
	}
	return json.Unmarshal(data, out)
}

// ExportCRLs fetches the current CRLs of the device issuing CA and of the
// device root from the server (GET /v1/crl/<key-id>.crl) and writes them to
// exports/crl/<key-id>.crl (DER) and exports/crls.pem (both, PEM), so an
// outside verifier can check a device chain with
// `openssl verify -x509_strict -crl_check_all -CAfile exports/device-root.pem
// -untrusted exports/ca-chain.pem -CRLfile exports/crls.pem DEVICE.pem`.
func ExportCRLs(ctx context.Context, env *Env, serverURL string) ([]string, error) {
	c, err := RoleClient(env, "regulator")
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(env.ExportsDir, "crl")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var all []byte
	var files []string
	for _, name := range []string{"ca/issuing.pem", "ca/root.pem"} {
		data, err := os.ReadFile(filepath.Join(env.Dir, name))
		if err != nil {
			return nil, err
		}
		certs, err := ca.ParseChainPEM(data)
		if err != nil {
			return nil, err
		}
		keyID := ca.KeyID(certs[0])
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, serverURL+"/v1/crl/"+keyID+".crl", nil)
		if err != nil {
			return nil, err
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, err
		}
		der, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, tacerr.New(tacerr.Internal, "GET the CRL of %s: HTTP %d: %s", name, resp.StatusCode, der)
		}
		if _, err := x509.ParseRevocationList(der); err != nil {
			return nil, tacerr.Wrap(tacerr.Internal, err, "the CRL of %s", name)
		}
		f := filepath.Join(dir, keyID+".crl")
		if err := os.WriteFile(f, der, 0o644); err != nil {
			return nil, err
		}
		files = append(files, f)
		all = append(all, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})...)
	}
	f := filepath.Join(env.ExportsDir, "crls.pem")
	return append(files, f), os.WriteFile(f, all, 0o644)
}
