package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509/pkix"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/tacerr"
	"github.com/tacline/tacline/verify"
)

// TestVerifyReadsDeviceFilesBounded: the chain and signature files of
// `tacline verify` come from the device being checked. A file far larger
// than any chain (verify.MaxChainBytes) or signature
// (verify.MaxSignatureBytes) is refused naming the flag's field after
// reading at most one byte past the limit. Before, the whole file was read
// into memory first (a 256 MiB "certificate" cost 256 MiB; /dev/zero
// never returned).
func TestVerifyReadsDeviceFilesBounded(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	root, err := ca.SelfSignedRoot(key, pkix.Name{CommonName: "Test Root"}, ca.ValidFor(time.Now().Add(-time.Hour), time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	trust := filepath.Join(dir, "trust.pem")
	if err := os.WriteFile(trust, ca.ChainPEM(root), 0o644); err != nil {
		t.Fatal(err)
	}
	const huge = 256 << 20
	big := filepath.Join(dir, "big")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(huge); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	f.Close()
	small := filepath.Join(dir, "small")
	if err := os.WriteFile(small, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, chain, sig, field string
	}{
		{"chain", big, small, "chain"},
		{"signature", filepath.Join(dir, "chain.pem"), big, "signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.chain != big {
				// A chain that parses, so the signature is read and judged.
				if err := os.WriteFile(tc.chain, ca.ChainPEM(root), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cmd := newVerifyCmd()
			cmd.SetArgs([]string{"--trust", trust, "--imei", "35-209900-176148-1", "--chain", tc.chain,
				"--nonce", strings.Repeat("ab", 32), "--signature", tc.sig})
			cmd.SetOut(io.Discard)
			cmd.SetErr(io.Discard)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := cmd.Execute()
			runtime.ReadMemStats(&after)
			e, ok := tacerr.As(err)
			if !ok || e.Code != tacerr.InvalidInput || e.Field != tc.field {
				t.Fatalf("verify = %v, want invalid_input naming %s", err, tc.field)
			}
			if got := after.TotalAlloc - before.TotalAlloc; got > huge/8 {
				t.Fatalf("reading a %d MiB %s file allocated %d MiB (limits: chain %d bytes, signature %d bytes)",
					huge>>20, tc.name, got>>20, verify.MaxChainBytes, verify.MaxSignatureBytes)
			}
		})
	}
}
