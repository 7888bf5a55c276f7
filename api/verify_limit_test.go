package api

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/tacerr"
)

// TestLimiter: a token bucket per client address with a burst, refilled at
// the rate; an empty bucket answers 429 with the whole seconds until the
// next token.
func TestLimiter(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := newLimiter(0.5, 3) // one token every 2 s, burst 3
	l.now = func() time.Time { return now }
	for _, tc := range []struct {
		name    string
		client  string
		advance time.Duration
		want    int // 0: admitted, else Retry-After seconds
	}{
		{"burst 1", "10.0.0.1", 0, 0},
		{"burst 2", "10.0.0.1", 0, 0},
		{"burst 3", "10.0.0.1", 0, 0},
		{"over the burst", "10.0.0.1", 0, 2},
		{"another address has its own bucket", "10.0.0.2", 0, 0},
		{"half a token later", "10.0.0.1", time.Second, 1},
		{"a token later", "10.0.0.1", time.Second, 0},
		{"empty again", "10.0.0.1", 0, 2},
		{"refilled after a long pause, only up to the burst", "10.0.0.1", time.Hour, 0},
		{"second of the refill", "10.0.0.1", 0, 0},
		{"third of the refill", "10.0.0.1", 0, 0},
		{"burst spent", "10.0.0.1", 0, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now = now.Add(tc.advance)
			if got := l.take(tc.client); got != tc.want {
				t.Fatalf("take = %d, want %d", got, tc.want)
			}
		})
	}
	// admit answers 429 with Retry-After and a problem body.
	r := httptest.NewRequest("GET", "/v1/lookup/x", nil)
	r.RemoteAddr = "10.0.0.1:5555"
	h := l.admit(r)
	if h == nil {
		t.Fatal("admitted over the limit")
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 429 || w.Header().Get("Retry-After") != "2" || w.Header().Get("Content-Type") != "application/problem+json" {
		t.Fatalf("%d %v %s", w.Code, w.Header(), w.Body)
	}
	// Buckets of idle clients are forgotten.
	now = now.Add(2 * time.Minute)
	l.take("10.0.0.3")
	if _, ok := l.buckets["10.0.0.2"]; ok || len(l.buckets) != 1 {
		t.Fatalf("buckets after a sweep: %v", l.buckets)
	}
}

// triggerCount is an Authenticity that only counts Trigger calls.
type triggerCount struct {
	Authenticity
	n int
}

func (c *triggerCount) Trigger() { c.n++ }

// TestRevocationsWakeThePublisher: revoke, reissue and void through the
// API wake the CRL publisher once each when they succeed, never when they
// fail.
func TestRevocationsWakeThePublisher(t *testing.T) {
	ctx := context.Background()
	fake := newFake(t, newPKI(t))
	tc := &triggerCount{}
	p, err := WithAuthenticity(fake, tc, DefaultAuthenticityConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Revoke(ctx, provisioner.RevokeInput{DeviceSerial: "D1", Reason: "stolen"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Reissue(ctx, provisioner.ReissueInput{DeviceSerial: "D1"}); err != nil {
		t.Fatal(err)
	}
	if err := p.Void(ctx, provisioner.VoidInput{Reason: "scrapped"}); err != nil {
		t.Fatal(err)
	}
	if tc.n != 3 {
		t.Fatalf("%d wake-ups after 3 revocations", tc.n)
	}
	fake.setFail("Revoke", tacerr.New(tacerr.InvalidState, "no"))
	if err := p.Revoke(ctx, provisioner.RevokeInput{DeviceSerial: "D1", Reason: "stolen"}); !tacerr.Is(err, tacerr.InvalidState) {
		t.Fatalf("failed revoke: %v", err)
	}
	if tc.n != 3 {
		t.Fatalf("a failed revocation woke the publisher")
	}
	if _, err := WithAuthenticity(fake, tc, AuthenticityConfig{}); err == nil {
		t.Fatal("zero rates accepted")
	}
}
