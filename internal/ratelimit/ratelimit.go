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
// Anonymous callers also share a second, coarser tier, with its own larger
// allowance: the site, the /16 of an IPv4 address or the /48 of an IPv6
// address (what one site is commonly given). An IPv6 /48 holds 256 /56s, so
// without it one site would get 256 callers' quotas. A request is admitted
// only when both its caller's and its site's buckets hold a token, and then
// takes one from each; a refused request takes none.
//
// The package promises: Admit is safe for concurrent use; memory
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

// Prefix lengths that make one anonymous caller, and one site.
const (
	IPv4Prefix     = 24
	IPv6Prefix     = 56
	IPv4SitePrefix = 16
	IPv6SitePrefix = 48
)

// Tier is the allowance of one bucket: Rate tokens per second, at most
// Burst held (a new bucket starts full). Rate must be > 0 and Burst >= 1
// (configuration validates both).
type Tier struct {
	Rate  float64
	Burst int
}

// Limit names the tier that refused a request.
type Limit string

const (
	CallerLimit Limit = "caller" // the caller's bucket: its identity, or its /24 or /56
	SiteLimit   Limit = "site"   // the site's bucket: the /16 or /48 of an anonymous caller
)

// Refusal is Admit's answer: zero when the request was admitted, else
// the whole seconds until it would be (the Retry-After to send with 429),
// the tier that refused it and that tier's bucket key.
type Refusal struct {
	RetryAfter int
	Limit      Limit
	Key        string
}

// Limiter is a token bucket per caller and one per site.
type Limiter struct {
	now func() time.Time

	mu           sync.Mutex
	caller, site buckets
	swept        time.Time
}

type buckets struct {
	rate  float64 // tokens per second
	burst float64
	m     map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// New returns a limiter of a caller tier and a site tier.
func New(caller, site Tier) *Limiter {
	return NewWithClock(caller, site, time.Now)
}

// NewWithClock is New with the clock injected (tests).
func NewWithClock(caller, site Tier, now func() time.Time) *Limiter {
	tier := func(t Tier) buckets {
		return buckets{rate: t.Rate, burst: float64(t.Burst), m: map[string]*bucket{}}
	}
	return &Limiter{now: now, caller: tier(caller), site: tier(site)}
}

// Admit takes one token for the caller of r, and one for its site when
// it is anonymous: identity when it is not empty (the caller's
// authenticated identity, no site), else r's address prefixes. It
// returns the zero Refusal when admitted.
func (l *Limiter) Admit(r *http.Request, identity string) Refusal {
	return l.take(Key(r, identity), SiteKey(r, identity))
}

// Key is the bucket of r's caller: "id:" + identity for an authenticated
// caller, else "net:" + the /24 (IPv4) or /56 (IPv6) prefix of its address
// (an IPv4-mapped IPv6 address counts as IPv4). A remote address that is
// not an IP address is its own key.
func Key(r *http.Request, identity string) string {
	if identity != "" {
		return "id:" + identity
	}
	ip, ok := addr(r)
	if !ok {
		return "addr:" + r.RemoteAddr
	}
	return "net:" + prefix(ip, IPv4Prefix, IPv6Prefix)
}

// SiteKey is the site bucket of r's caller: "site:" + the /16 (IPv4) or
// /48 (IPv6) prefix of its address; "" (no site tier) for an
// authenticated caller or a remote address that is not an IP address.
func SiteKey(r *http.Request, identity string) string {
	if identity != "" {
		return ""
	}
	ip, ok := addr(r)
	if !ok {
		return ""
	}
	return "site:" + prefix(ip, IPv4SitePrefix, IPv6SitePrefix)
}

func addr(r *http.Request) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return ip.Unmap().WithZone(""), true
}

func prefix(ip netip.Addr, v4, v6 int) string {
	bits := v6
	if ip.Is4() {
		bits = v4
	}
	p, _ := ip.Prefix(bits)
	return p.String()
}

// take takes a token from key's caller bucket and from site's bucket
// (none when site is ""), both or neither.
func (l *Limiter) take(key, site string) Refusal {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		l.caller.sweep(now)
		l.site.sweep(now)
		l.swept = now
	}
	c := l.caller.refill(key, now)
	var s *bucket
	if site != "" {
		s = l.site.refill(site, now)
	}
	var out Refusal
	if c.tokens < 1 {
		out = Refusal{RetryAfter: l.caller.wait(c), Limit: CallerLimit, Key: key}
	}
	if s != nil && s.tokens < 1 {
		if w := l.site.wait(s); w > out.RetryAfter {
			out = Refusal{RetryAfter: w, Limit: SiteLimit, Key: site}
		}
	}
	if out.RetryAfter > 0 {
		return out
	}
	c.tokens--
	if s != nil {
		s.tokens--
	}
	return Refusal{}
}

// sweep forgets the buckets that are full again.
func (t *buckets) sweep(now time.Time) {
	full := time.Duration(t.burst / t.rate * float64(time.Second))
	for k, b := range t.m {
		if now.Sub(b.at) > full {
			delete(t.m, k)
		}
	}
}

// refill returns key's bucket with the tokens accrued until now.
func (t *buckets) refill(key string, now time.Time) *bucket {
	b, ok := t.m[key]
	if !ok {
		b = &bucket{tokens: t.burst, at: now}
		t.m[key] = b
	}
	b.tokens = math.Min(t.burst, b.tokens+now.Sub(b.at).Seconds()*t.rate)
	b.at = now
	return b
}

// wait is the whole seconds until b holds a token, at least 1.
func (t *buckets) wait(b *bucket) int {
	return max(1, int(math.Ceil((1-b.tokens)/t.rate)))
}

// callers is the number of buckets held, both tiers (tests).
func (l *Limiter) callers() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.caller.m) + len(l.site.m)
}
