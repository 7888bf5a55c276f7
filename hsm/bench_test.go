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
	return newP256(tb, hsmtest.Open(tb, hsmtest.NewToken(tb)), "bench")
}

// newP256 generates a P-256 key labelled label and returns its Signer.
func newP256(tb testing.TB, tok *hsm.Token, label string) crypto.Signer {
	tb.Helper()
	if _, err := tok.GenerateKey(label, hsm.ECP256); err != nil {
		tb.Fatal(err)
	}
	s, err := tok.Signer(label)
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
	s := newP256(t, tok, "k")
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
