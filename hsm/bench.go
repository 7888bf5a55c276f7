package hsm

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// BenchSign signs SHA-256 digests with signer from workers goroutines for
// duration d (or until ctx ends) and returns signatures per second. The
// first error stops the run and is returned. The digests differ from one
// signature to the next, as in production.
func BenchSign(ctx context.Context, signer crypto.Signer, workers int, d time.Duration) (perSecond float64, err error) {
	if workers < 1 {
		return 0, fmt.Errorf("bench: workers must be at least 1, got %d", workers)
	}
	if d <= 0 {
		return 0, fmt.Errorf("bench: duration must be positive, got %s", d)
	}
	opts := crypto.SHA256 // ECDSA ignores it; RSA keys sign PKCS#1 v1.5
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var (
		count    atomic.Int64
		firstErr error
		errOnce  sync.Once
		wg       sync.WaitGroup
	)
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var seed [8]byte
			_, _ = rand.Read(seed[:])
			for i := 0; ctx.Err() == nil; i++ {
				digest := sha256.Sum256(fmt.Appendf(seed[:], "%d/%d", w, i))
				if _, err := signer.Sign(rand.Reader, digest[:], opts); err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				count.Add(1)
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return 0, fmt.Errorf("bench: sign: %w", firstErr)
	}
	return float64(count.Load()) / elapsed.Seconds(), nil
}
