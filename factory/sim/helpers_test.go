package sim

import (
	"testing"

	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/factory/factorytest"
)

type testPKI = factorytest.PKI

// Test TACs (reporting body 00), as in the station client's tests.
const (
	tacA = 101700
	tacB = 101800
)

func newPKI(t testing.TB) *testPKI {
	return factorytest.NewPKI(t, factorytest.Files{ServerCA: factory.CredsServerCAFile, Roots: factory.CredsRootsFile,
		Cert: factory.CredsCertFile, Key: factory.CredsKeyFile, Product: factory.CredsProductFile})
}

// stations makes n station credentials directories under p.Dir.
func stations(t testing.TB, p *testPKI, n int, product string) []factory.StationCreds {
	var out []factory.StationCreds
	for _, s := range p.Stations(t, n, product) {
		out = append(out, factory.StationCreds{ID: s.ID, CertFile: s.CertFile, KeyFile: s.KeyFile, Product: s.Product})
	}
	return out
}
