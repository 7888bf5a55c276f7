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
	l := NewWithClock(0.5, 3, func() time.Time { return now }) // one token every 2 s, burst 3
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
		if got := l.Take(tc.key); got != tc.want {
			t.Fatalf("%s: Take = %d, want %d", tc.name, got, tc.want)
		}
	}
	now = now.Add(2 * time.Minute)
	l.Take("c")
	if n := l.callers(); n != 1 {
		t.Fatalf("%d buckets after a sweep, want 1", n)
	}
}

// TestKey: anonymous callers are keyed by their /24 or /56, authenticated
// ones by identity wherever they connect from.
func TestKey(t *testing.T) {
	t.Parallel()
	key := func(addr, id string) string {
		r := httptest.NewRequest("GET", "/v1/lookup/x", nil)
		r.RemoteAddr = addr
		return Key(r, id)
	}
	for _, tc := range []struct {
		name, addr, id, want string
	}{
		{"IPv4 /24", "203.0.113.77:4000", "", "net:203.0.113.0/24"},
		{"loopback /24", "127.0.0.20:1", "", "net:127.0.0.0/24"},
		{"IPv4-mapped IPv6 is IPv4", "[::ffff:203.0.113.9]:4000", "", "net:203.0.113.0/24"},
		{"IPv6 /56", "[2001:db8:aa:bb12:1::7]:443", "", "net:2001:db8:aa:bb00::/56"},
		{"IPv6 with zone", "[fe80::1%eth0]:443", "", "net:fe80::/56"},
		{"identity wins over the address", "203.0.113.77:4000", "F1-L1-S01", "id:F1-L1-S01"},
		{"not an IP", "pipe", "", "addr:pipe"},
	} {
		if got := key(tc.addr, tc.id); got != tc.want {
			t.Errorf("%s: Key(%q, %q) = %q, want %q", tc.name, tc.addr, tc.id, got, tc.want)
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
		l := NewWithClock(1, burst, func() time.Time { return now })
		admitted := 0
		for i := 1; i <= 20; i++ {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = fmt.Sprintf(net.format, i)
			if l.Admit(r, "") == 0 {
				admitted++
			}
		}
		if admitted != burst {
			t.Errorf("%s: %d of 20 requests from one prefix admitted, want the burst %d", net.name, admitted, burst)
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = net.other
		if l.Admit(r, "") != 0 {
			t.Errorf("%s: another prefix was limited", net.name)
		}
		r.RemoteAddr = fmt.Sprintf(net.format, 1)
		if l.Admit(r, "regulator-1") != 0 || l.Admit(r, "") == 0 {
			t.Errorf("%s: an authenticated caller shares the anonymous bucket of its address", net.name)
		}
	}
}
