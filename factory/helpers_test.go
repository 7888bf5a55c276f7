package factory

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tacline/tacline/factory/factorytest"
)

// testPKI is the one test PKI of the station's and the simulator's tests.
type testPKI = factorytest.PKI

// credsFiles is the credentials directory layout the PKI writes.
var credsFiles = factorytest.Files{ServerCA: CredsServerCAFile, Roots: CredsRootsFile, Cert: CredsCertFile, Key: CredsKeyFile, Product: CredsProductFile}

func newPKI(t testing.TB) *testPKI { return factorytest.NewPKI(t, credsFiles) }

// testClient returns a Client of p's station for srv, with sleeps recorded
// instead of waited.
func testClient(t testing.TB, p *testPKI, srv *httptest.Server, cfg ClientConfig) (*Client, *[]time.Duration) {
	t.Helper()
	cfg.ServerURL = srv.URL
	if cfg.CertFile == "" {
		cfg.CertFile, cfg.KeyFile = p.CertFile, p.KeyFile
	}
	if cfg.CAFile == "" {
		cfg.CAFile = p.ServerCAFile
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	var waits []time.Duration
	c.sleep = func(ctx context.Context, d time.Duration) error {
		waits = append(waits, d)
		return ctx.Err()
	}
	return c, &waits
}

// stations makes n station credentials directories under p.Dir.
func stations(t testing.TB, p *testPKI, n int, product string) []StationCreds {
	var out []StationCreds
	for _, s := range p.Stations(t, n, product) {
		out = append(out, StationCreds{ID: s.ID, CertFile: s.CertFile, KeyFile: s.KeyFile, Product: s.Product})
	}
	return out
}
