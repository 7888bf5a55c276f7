package stepca_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"go.step.sm/crypto/pemutil"

	"github.com/tacline/tacline/stepca"
	"github.com/tacline/tacline/tacerr"
)

// TestBootstrapReplacesTheIdentityWhole: a station bootstrapped again
// (a new key, a new certificate) and stopped at any step of writing it, as
// a crash stops it, leaves in its directory the old identity or the new
// one: cert.pem and key.pem, read by their names, load as a matching pair,
// and the station loads it (NewRenewer). Before, the key was written,
// then the certificate: stopped between the two, the directory held the
// new key beside the old certificate.
func TestBootstrapReplacesTheIdentityWhole(t *testing.T) {
	h := startHostileCA(t)
	h.answer = func(csr *x509.CertificateRequest) []byte { return h.leafFor(t, csr.PublicKey) }
	ctx := context.Background()
	var steps []string
	restore := stepca.SetWriteStep(func(s string) { steps = append(steps, s) })
	if _, err := stepca.Bootstrap(ctx, h.url, h.rootFile, h.ott(t, "S1"), filepath.Join(t.TempDir(), "S1")); err != nil {
		t.Fatal(err)
	}
	restore()
	if len(steps) == 0 {
		t.Fatal("no write step reported")
	}
	for i, step := range steps {
		t.Run(step, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "S1")
			first, err := stepca.Bootstrap(ctx, h.url, h.rootFile, h.ott(t, "S1"), dir)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			defer stepca.SetWriteStep(func(string) {
				if n == i {
					runtime.Goexit() // the bootstrap stops here
				}
				n++
			})()
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, _ = stepca.Bootstrap(ctx, h.url, h.rootFile, h.ott(t, "S1"), dir)
			}()
			<-done
			pair, err := tls.LoadX509KeyPair(filepath.Join(dir, stepca.StationCertFile), filepath.Join(dir, stepca.StationKeyFile))
			if err != nil {
				t.Fatalf("stopped at %q: cert.pem and key.pem do not load as a pair: %v", step, err)
			}
			r, err := stepca.NewRenewer(dir)
			if err != nil {
				t.Fatalf("stopped at %q: %v", step, err)
			}
			if !r.Leaf().Equal(pair.Leaf) {
				t.Fatalf("stopped at %q: the station loads serial %x, its cert.pem holds %x", step, r.Leaf().SerialNumber, pair.Leaf.SerialNumber)
			}
			t.Logf("stopped at %q: the %s identity", step, map[bool]string{true: "old", false: "new"}[pair.Leaf.Equal(first)])
		})
	}
}

// TestRenewerRefusesAMismatchedIdentity: a station directory whose key is
// not its certificate's, or whose certificate does not chain to the root
// stepca.json names (files replaced in part by hand or by an older
// tacline), is refused when loaded, naming the files and the way out.
func TestRenewerRefusesAMismatchedIdentity(t *testing.T) {
	h := startHostileCA(t)
	h.answer = func(csr *x509.CertificateRequest) []byte { return h.leafFor(t, csr.PublicKey) }
	bootstrap := func(t *testing.T) string {
		t.Helper()
		dir := filepath.Join(t.TempDir(), "S1")
		if _, err := stepca.Bootstrap(context.Background(), h.url, h.rootFile, h.ott(t, "S1"), dir); err != nil {
			t.Fatal(err)
		}
		if _, err := stepca.NewRenewer(dir); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	t.Run("another key", func(t *testing.T) {
		dir := bootstrap(t)
		blk, err := pemutil.Serialize(mustKey(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, stepca.StationKeyFile), pem.EncodeToMemory(blk), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err = stepca.NewRenewer(dir)
		e, ok := tacerr.As(err)
		if !ok || e.Code != tacerr.InvalidInput || e.Field != "dir" {
			t.Fatalf("a key that is not the certificate's: %v, want invalid_input on dir", err)
		}
		for _, want := range []string{filepath.Join(dir, stepca.StationKeyFile), filepath.Join(dir, stepca.StationCertFile), "tacline station bootstrap"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("the refusal does not name %q: %v", want, err)
			}
		}
	})
	t.Run("text before the certificate", func(t *testing.T) {
		dir := bootstrap(t)
		f := filepath.Join(dir, stepca.StationCertFile)
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, append([]byte("subject=CN=S1\n"), b...), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err = stepca.NewRenewer(dir)
		e, ok := tacerr.As(err)
		if !ok || e.Code != tacerr.InvalidInput || e.Field != "dir" || !strings.Contains(err.Error(), f+": text before the first PEM block at line 1") {
			t.Fatalf("a certificate file with text before its block: %v, want invalid_input on dir naming %s and the line", err, f)
		}
	})
	t.Run("another root", func(t *testing.T) {
		dir := bootstrap(t)
		other := startHostileCA(t)
		b, err := json.Marshal(map[string]string{"ca_url": h.url, "root": other.rootFile})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, stepca.StationCAFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err = stepca.NewRenewer(dir)
		e, ok := tacerr.As(err)
		if !ok || e.Code != tacerr.InvalidInput || !strings.Contains(err.Error(), filepath.Join(dir, stepca.StationCertFile)) ||
			!strings.Contains(err.Error(), "tacline station bootstrap") {
			t.Fatalf("a certificate of another step-ca: %v, want invalid_input naming cert.pem and the way out", err)
		}
	})
}
