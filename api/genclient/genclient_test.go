package genclient_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/tacline/tacline/api"
	"github.com/tacline/tacline/api/genclient"
	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/internal/openapitest"
)

// TestGeneratedUpToDate: client.gen.go is exactly what oapi-codegen (the
// version pinned as a tool in go.mod) makes from api/openapi.yaml now.
func TestGeneratedUpToDate(t *testing.T) {
	// The checked-in configuration, writing elsewhere.
	cfg, err := os.ReadFile("oapi-codegen.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "client.gen.go")
	cfg = bytes.Replace(cfg, []byte("\noutput: client.gen.go\n"), []byte("\noutput: "+out+"\n"), 1)
	if !bytes.Contains(cfg, []byte(out)) {
		t.Fatal("oapi-codegen.yaml has no line \"output: client.gen.go\"")
	}
	if err := os.WriteFile(filepath.Join(dir, "oapi-codegen.yaml"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "tool", "oapi-codegen", "-config", filepath.Join(dir, "oapi-codegen.yaml"), "../openapi.yaml")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go tool oapi-codegen: %v\n%s", err, b)
	}
	fresh, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	have, err := os.ReadFile("client.gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fresh, have) {
		t.Fatal("api/genclient/client.gen.go is not what oapi-codegen makes from api/openapi.yaml: run go generate ./api/genclient (never edit it by hand)")
	}
}

// csr makes a device key and its PKCS#10 request (PEM), as a device would.
func csr(t *testing.T, serial string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: serial}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// TestGeneratedClientProvisions: the generated client, given only a
// station's certificate and the server's CA, pre-allocates, binds,
// provisions and reads devices over mutual TLS against a real server
// (SoftHSM2, SQLite), and decodes a problem+json error. Every exchange is
// also checked against the document.
func TestGeneratedClientProvisions(t *testing.T) {
	ctx := context.Background()
	env, err := devenv.Setup(ctx, devenv.Options{Dir: t.TempDir(), Stations: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, url, stop, err := devenv.ServeInProcess(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("server: %v", err)
		}
	})
	creds, err := factory.LoadCreds(env.CredsDir, 1)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(creds.Stations[0].CertFile, creds.Stations[0].KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(creds.ServerCAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	doc := openapitest.MustNew("api/openapi.yaml", api.OpenAPI())
	hc := &http.Client{Timeout: 30 * time.Second, Transport: doc.Transport(t, tr)}
	c, err := genclient.NewClientWithResponses(url, genclient.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}

	pools, err := c.ListPoolsWithResponse(ctx)
	if err != nil || pools.JSON200 == nil || len(pools.JSON200.Pools) == 0 {
		t.Fatalf("list pools: %v %s", err, body(pools))
	}
	pool := pools.JSON200.Pools[0].Name

	// Pre-allocate two devices' IMEIs, then bind the first group.
	alloc, err := c.AllocateWithResponse(ctx, genclient.AllocationRequest{RequestId: "gen-alloc-1", Pool: pool, Count: 2})
	if err != nil || alloc.JSON201 == nil || len(alloc.JSON201.Devices) != 2 {
		t.Fatalf("allocate: %v %s", err, body(alloc))
	}
	group := alloc.JSON201.Devices[0]
	bound, err := c.BindWithResponse(ctx, genclient.BindRequest{RequestId: "gen-bind-1", Imeis: group, DeviceSerial: "GEN-1", Csr: csr(t, "GEN-1")})
	if err != nil || bound.JSON201 == nil || !slices.Equal(bound.JSON201.Imeis, group) {
		t.Fatalf("bind %v: %v %s", group, err, body(bound))
	}

	// Provision a device in one call, by product.
	product := creds.Stations[0].Product
	prov, err := c.ProvisionWithResponse(ctx, genclient.ProvisionRequest{RequestId: "gen-prov-1", DeviceSerial: "GEN-2", Product: &product, Csr: csr(t, "GEN-2")})
	if err != nil || prov.JSON201 == nil || len(prov.JSON201.Imeis) == 0 || prov.JSON201.Certificate == "" {
		t.Fatalf("provision: %v %s", err, body(prov))
	}
	block, _ := pem.Decode([]byte(prov.JSON201.Certificate))
	if block == nil {
		t.Fatalf("provision: certificate %q is not PEM", prov.JSON201.Certificate)
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		t.Fatalf("provision: certificate: %v", err)
	}

	// Read both devices back.
	for serial, imeis := range map[string][]genclient.IMEI15{"GEN-1": group, "GEN-2": prov.JSON201.Imeis} {
		dev, err := c.GetDeviceWithResponse(ctx, serial)
		if err != nil || dev.JSON200 == nil {
			t.Fatalf("get device %s: %v %s", serial, err, body(dev))
		}
		var got []genclient.IMEI15
		for _, m := range dev.JSON200.Imeis {
			got = append(got, m.Imei)
		}
		if dev.JSON200.State != genclient.DeviceStatusStateBOUND || !slices.Equal(got, imeis) {
			t.Fatalf("device %s: state %s IMEIs %v, want BOUND %v", serial, dev.JSON200.State, got, imeis)
		}
	}

	// The same device again under a new request id: a problem document
	// naming the device's IMEIs.
	again, err := c.ProvisionWithResponse(ctx, genclient.ProvisionRequest{RequestId: "gen-prov-2", DeviceSerial: "GEN-2", Product: &product, Csr: csr(t, "GEN-2")})
	if err != nil || again.ApplicationproblemJSON409 == nil {
		t.Fatalf("provision twice: %v %s", err, body(again))
	}
	p := again.ApplicationproblemJSON409
	if p.Code != "device_already_provisioned" || p.Status != 409 || p.Retryable || p.Imeis == nil || !slices.Equal(*p.Imeis, prov.JSON201.Imeis) ||
		again.HTTPResponse.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("provision twice: problem %+v", p)
	}
	// An unknown device: 404 problem.
	missing, err := c.GetDeviceWithResponse(ctx, "NO-SUCH-DEVICE")
	if err != nil || missing.ApplicationproblemJSON404 == nil || missing.ApplicationproblemJSON404.Code == "" {
		t.Fatalf("unknown device: %v %s", err, body(missing))
	}
}

// body is a reply's status and body for failure messages.
func body[R any](r *R) string {
	if r == nil {
		return "(no reply)"
	}
	v := reflect.ValueOf(r).Elem()
	return fmt.Sprintf("%v: %s", v.FieldByName("HTTPResponse").Interface().(*http.Response).Status, v.FieldByName("Body").Bytes())
}
