package hsm_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/hsm/hsmtest"
)

func p256Signer(tb testing.TB) crypto.Signer {
	tb.Helper()
	tok := hsmtest.Open(tb, hsmtest.NewToken(tb))
	if _, err := tok.GenerateKey("bench", hsm.ECP256); err != nil {
		tb.Fatal(err)
	}
	s, err := tok.Signer("bench")
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestBenchSign(t *testing.T) {
	t.Parallel()
	s := p256Signer(t)
	tests := []struct {
		name    string
		workers int
		d       time.Duration
		wantErr bool
	}{
		{name: "one worker", workers: 1, d: 50 * time.Millisecond},
		{name: "two workers", workers: 2, d: 50 * time.Millisecond},
		{name: "no workers", workers: 0, d: time.Second, wantErr: true},
		{name: "no time", workers: 1, d: 0, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rate, err := hsm.BenchSign(t.Context(), s, tt.workers, tt.d)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("BenchSign = %v, want an error", rate)
				}
				return
			}
			if err != nil || rate <= 0 {
				t.Fatalf("BenchSign = %v, %v; want a positive rate", rate, err)
			}
		})
	}
}

func TestBenchSignReportsErrors(t *testing.T) {
	t.Parallel()
	cfg := hsmtest.NewToken(t)
	tok := hsmtest.Open(t, cfg)
	if _, err := tok.GenerateKey("k", hsm.ECP256); err != nil {
		t.Fatal(err)
	}
	s, err := tok.Signer("k")
	if err != nil {
		t.Fatal(err)
	}
	if err := tok.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := hsm.BenchSign(context.Background(), s, 2, time.Second); err == nil {
		t.Fatal("BenchSign with a closed token succeeded")
	}
}

// BenchmarkSign measures raw P-256 signatures on SoftHSM2 through the
// recovering wrapper, with 1, 2 and 4 concurrent signers (ns/op is wall
// time per signature across all of them).
func BenchmarkSign(b *testing.B) {
	s := p256Signer(b)
	digest := sha256.Sum256([]byte("bench"))
	for _, workers := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("p256/workers=%d", workers), func(b *testing.B) {
			var next atomic.Int64
			var wg sync.WaitGroup
			for range workers {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						if _, err := s.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}
