package ratelimit

import (
	"fmt"
	"net/http/httptest"
	"testing"
	"time"
)

// TestTake: a token bucket per key with a burst, refilled at the rate; an
// empty bucket answers the whole seconds until the next token; buckets of
// idle callers are forgotten.
func TestTake(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := NewWithClock(Tier{0.5, 3}, Tier{0.5, 3}, func() time.Time { return now }) // one token every 2 s, burst 3
	for _, tc := range []struct {
		name    string
		key     string
		advance time.Duration
		want    int // 0: admitted, else Retry-After seconds
	}{
		{"burst 1", "a", 0, 0},
		{"burst 2", "a", 0, 0},
		{"burst 3", "a", 0, 0},
		{"over the burst", "a", 0, 2},
		{"another key has its own bucket", "b", 0, 0},
		{"half a token later", "a", time.Second, 1},
		{"a token later", "a", time.Second, 0},
		{"empty again", "a", 0, 2},
		{"refilled after a long pause, only up to the burst", "a", time.Hour, 0},
		{"second of the refill", "a", 0, 0},
		{"third of the refill", "a", 0, 0},
		{"burst spent", "a", 0, 2},
	} {
		now = now.Add(tc.advance)
		if got := l.take(tc.key, ""); got.RetryAfter != tc.want || got.RetryAfter > 0 && (got.Limit != CallerLimit || got.Key != tc.key) {
			t.Fatalf("%s: take = %+v, want Retry-After %d", tc.name, got, tc.want)
		}
	}
	now = now.Add(2 * time.Minute)
	l.take("c", "")
	if n := l.callers(); n != 1 {
		t.Fatalf("%d buckets after a sweep, want 1", n)
	}
}

// TestKey: anonymous callers are keyed by their /24 or /56 and their site,
// the /16 or /48; authenticated ones by identity wherever they connect
// from, without a site.
func TestKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, addr, id, key, site string
	}{
		{"IPv4", "203.0.113.77:4000", "", "net:203.0.113.0/24", "site:203.0.0.0/16"},
		{"loopback", "127.0.0.20:1", "", "net:127.0.0.0/24", "site:127.0.0.0/16"},
		{"IPv4-mapped IPv6 is IPv4", "[::ffff:203.0.113.9]:4000", "", "net:203.0.113.0/24", "site:203.0.0.0/16"},
		{"IPv6", "[2001:db8:aa:bb12:1::7]:443", "", "net:2001:db8:aa:bb00::/56", "site:2001:db8:aa::/48"},
		{"IPv6 with zone", "[fe80::1%eth0]:443", "", "net:fe80::/56", "site:fe80::/48"},
		{"identity wins over the address", "203.0.113.77:4000", "F1-L1-S01", "id:F1-L1-S01", ""},
		{"not an IP", "pipe", "", "addr:pipe", ""},
	} {
		r := httptest.NewRequest("GET", "/v1/lookup/x", nil)
		r.RemoteAddr = tc.addr
		if key, site := Key(r, tc.id), SiteKey(r, tc.id); key != tc.key || site != tc.site {
			t.Errorf("%s: Key, SiteKey(%q, %q) = %q, %q, want %q, %q", tc.name, tc.addr, tc.id, key, site, tc.key, tc.site)
		}
	}
}

// TestAdmitSharesAPrefix: 20 addresses of one /24 (or one /56) share one
// burst; another network, and an authenticated caller, have their own.
func TestAdmitSharesAPrefix(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	const burst = 5
	for _, net := range []struct{ name, format, other string }{
		{"IPv4", "127.0.0.%d:1234", "127.0.1.1:1234"},
		{"IPv6", "[2001:db8:0:%x::1]:1234", "[2001:db8:0:100::1]:1234"},
	} {
		l := NewWithClock(Tier{1, burst}, Tier{1, 10 * burst}, func() time.Time { return now })
		admitted := 0
		for i := 1; i <= 20; i++ {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = fmt.Sprintf(net.format, i)
			if l.Admit(r, "").RetryAfter == 0 {
				admitted++
			}
		}
		if admitted != burst {
			t.Errorf("%s: %d of 20 requests from one prefix admitted, want the burst %d", net.name, admitted, burst)
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = net.other
		if l.Admit(r, "").RetryAfter != 0 {
			t.Errorf("%s: another prefix was limited", net.name)
		}
		r.RemoteAddr = fmt.Sprintf(net.format, 1)
		if l.Admit(r, "regulator-1").RetryAfter != 0 || l.Admit(r, "").RetryAfter == 0 {
			t.Errorf("%s: an authenticated caller shares the anonymous bucket of its address", net.name)
		}
	}
}

// TestSiteTier: the /56s of one IPv6 /48 (the /24s of one IPv4 /16) each
// have their caller's burst, but together only the site's; another site,
// and an authenticated caller, are not held by it.
func TestSiteTier(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	const burst, siteBurst = 5, 20
	for _, net := range []struct{ name, format, site, other string }{
		{"IPv6", "[2001:db8:aa:%x00::1]:1234", "site:2001:db8:aa::/48", "[2001:db8:ab::1]:1234"},
		{"IPv4", "198.51.%d.1:1234", "site:198.51.0.0/16", "198.52.0.1:1234"},
	} {
		l := NewWithClock(Tier{1, burst}, Tier{1, siteBurst}, func() time.Time { return now })
		admitted := 0
		var last Refusal
		for i := range 256 {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = fmt.Sprintf(net.format, i)
			if last = l.Admit(r, ""); last.RetryAfter == 0 {
				admitted++
			}
		}
		if admitted != siteBurst || last.Limit != SiteLimit || last.Key != net.site || last.RetryAfter != 1 {
			t.Errorf("%s: %d of 256 requests from the callers of one site admitted (last refusal %+v), want the site burst %d refused by %s", net.name, admitted, last, siteBurst, net.site)
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = net.other
		if got := l.Admit(r, ""); got.RetryAfter != 0 {
			t.Errorf("%s: another site was limited: %+v", net.name, got)
		}
		r.RemoteAddr = fmt.Sprintf(net.format, 0)
		if got := l.Admit(r, "regulator-1"); got.RetryAfter != 0 {
			t.Errorf("%s: an authenticated caller is held by its address's site: %+v", net.name, got)
		}
	}
}

// TestRefusalTakesNothing: both tiers are checked before a token is taken,
// so a request the site refuses leaves its caller's bucket as it was.
func TestRefusalTakesNothing(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	l := NewWithClock(Tier{0.001, 2}, Tier{1, 2}, func() time.Time { return now })
	a, b := "net:10.0.1.0/24", "net:10.0.2.0/24"
	const site = "site:10.0.0.0/16"
	for i, step := range []struct {
		key     string
		advance time.Duration
		want    Limit // "": admitted
	}{
		{a, 0, ""},
		{b, 0, ""},        // the site's burst is spent
		{a, 0, SiteLimit}, // a still holds a token
		{a, 0, SiteLimit},
		{a, time.Second, ""}, // a token for the site: a's last token is taken
		{a, time.Second, CallerLimit},
	} {
		now = now.Add(step.advance)
		if got := l.take(step.key, site); got.Limit != step.want {
			t.Fatalf("step %d (%s): %+v, want %q", i, step.key, got, step.want)
		}
	}
}
