// Package ratelimit is the one rate limiter of tacline's public routes: the
// authenticity lookup, public challenges and checks, and any page that
// shares their quota (the console's /check page takes its tokens from the
// lookup's Limiter).
//
// A Limiter is a token bucket per caller. The caller is its authenticated
// identity when it has one (a client certificate's station or role
// identity: one bucket wherever it connects from), otherwise its address
// prefix: the /24 of an IPv4 address, the /56 of an IPv6 address (the
// smallest block an ISP commonly gives one customer). So a client that
// spreads its requests over the addresses of one network gets one quota,
// not one per address.
//
// The package promises: Take and Admit are safe for concurrent use; memory
// is bounded by the callers seen in the last few minutes (buckets that
// have refilled are forgotten); an empty bucket answers the whole seconds
// until its next token, never 0.
//
// Buckets live in the process: replicas do not share them, so N replicas
// behind one address admit up to N times a caller's limit, and each is
// configured with the total / N (docs/operations.md, "Rate limits and
// replicas"). A shared bucket would cost a database write or a cache round
// trip on every public request.
package ratelimit

import (
	"math"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Prefix lengths that make one anonymous caller.
const (
	IPv4Prefix = 24
	IPv6Prefix = 56
)

// Limiter is a token bucket per caller key.
type Limiter struct {
	rate  float64 // tokens per second
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

// New returns a limiter of rate tokens per second per caller, holding at
// most burst tokens (a new caller starts full). rate must be > 0 and
// burst >= 1 (configuration validates both).
func New(rate float64, burst int) *Limiter {
	return NewWithClock(rate, burst, time.Now)
}

// NewWithClock is New with the clock injected (tests).
func NewWithClock(rate float64, burst int, now func() time.Time) *Limiter {
	return &Limiter{rate: rate, burst: float64(burst), now: now, buckets: map[string]*bucket{}}
}

// Admit takes one token for the caller of r: identity when it is not empty
// (the caller's authenticated identity), else r's address prefix. It
// returns 0 when admitted, else the whole seconds until a token is
// available (the Retry-After to send with 429).
func (l *Limiter) Admit(r *http.Request, identity string) int {
	return l.Take(Key(r, identity))
}

// Key is the bucket of r's caller: "id:" + identity for an authenticated
// caller, else "net:" + the /24 (IPv4) or /56 (IPv6) prefix of its address
// (an IPv4-mapped IPv6 address counts as IPv4). A remote address that is
// not an IP address is its own key.
func Key(r *http.Request, identity string) string {
	if identity != "" {
		return "id:" + identity
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return "addr:" + r.RemoteAddr
	}
	ip = ip.Unmap().WithZone("")
	bits := IPv6Prefix
	if ip.Is4() {
		bits = IPv4Prefix
	}
	p, _ := ip.Prefix(bits)
	return "net:" + p.String()
}

// Take takes one token from key's bucket: 0 when one was taken, else the
// whole seconds until one is available.
func (l *Limiter) Take(key string) int {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		// Forget callers whose buckets are full again.
		full := time.Duration(l.burst / l.rate * float64(time.Second))
		for k, b := range l.buckets {
			if now.Sub(b.at) > full {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{tokens: l.burst, at: now}
		l.buckets[key] = b
	}
	b.tokens = math.Min(l.burst, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	return max(1, int(math.Ceil((1-b.tokens)/l.rate)))
}

// callers is the number of buckets held (tests).
func (l *Limiter) callers() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
