package devenv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tacline/tacline/api"
	"github.com/tacline/tacline/ca/castore"
	"github.com/tacline/tacline/factory"
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
	rec, err := firstDevice(filepath.Join(env.ExportsDir, "devices.ndjson"))
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(env.ExportsDir, "device-keys", rec.DeviceSerial+".pem"))
	if err != nil {
		return nil, err
	}
	key, err := factory.ParseDeviceKey(keyPEM)
	if err != nil {
		return nil, err
	}
	caChain, err := os.ReadFile(filepath.Join(env.ExportsDir, "ca-chain.pem"))
	if err != nil {
		return nil, err
	}
	chain := rec.Certificate + string(caChain)
	clone, err := factory.NewDevice("clone-of-" + rec.DeviceSerial)
	if err != nil {
		return nil, err
	}
	res := &AuthenticityResult{}
	for _, step := range []struct {
		name string
		sign func([]byte) ([]byte, error)
		dst  *verify.Result
	}{
		{"the device itself", func(n []byte) ([]byte, error) { return factory.SignChallenge(key, n) }, &res.Genuine},
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
		req := verify.Request{IMEI: rec.IMEIs[0], Chain: chain, Nonce: ch.Nonce, Signature: base64.StdEncoding.EncodeToString(sig)}
		if err := postJSON(ctx, c, serverURL+api.PathVerify, req, step.dst); err != nil {
			return nil, err
		}
		fmt.Fprintf(out, "   %-50s IMEI %s: %s (%s)\n", step.name, rec.IMEIs[0], step.dst.Verdict, step.dst.Reasons[len(step.dst.Reasons)-1])
	}
	return res, nil
}

// RoleClient is an HTTPS client with the environment's identity of a role
// (identities/role-<role>) that trusts the server's CA.
func RoleClient(env *Env, role string) (*http.Client, error) {
	dir := filepath.Join(env.IdentitiesDir, "role-"+role)
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(filepath.Join(env.CredsDir, castore.ServerCAFile))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, tacerr.New(tacerr.Internal, "%s holds no certificate", castore.ServerCAFile)
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS12, RootCAs: pool, Certificates: []tls.Certificate{cert}}}}, nil
}

func firstDevice(path string) (*factory.DeviceRecord, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	if !sc.Scan() {
		return nil, tacerr.New(tacerr.NotFound, "%s lists no device", path)
	}
	var rec factory.DeviceRecord
	if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || len(rec.IMEIs) == 0 {
		return nil, tacerr.New(tacerr.Internal, "%s: first line is not a device record: %v", path, err)
	}
	return &rec, nil
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
