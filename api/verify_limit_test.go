package api

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/internal/ratelimit"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/tacerr"
)

// TestLimitedAnswer: a refused caller gets 429 with Retry-After and a
// rate_limited problem naming its bucket.
func TestLimitedAnswer(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := ratelimit.NewWithClock(0.5, 1, func() time.Time { return now })
	r := httptest.NewRequest("GET", "/v1/lookup/x", nil)
	r.RemoteAddr = "10.0.0.1:5555"
	if h := limited(l, r, ""); h != nil {
		t.Fatal("the first request was refused")
	}
	r.RemoteAddr = "10.0.0.2:5555" // same /24
	h := limited(l, r, "")
	if h == nil {
		t.Fatal("admitted over the limit")
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 429 || w.Header().Get("Retry-After") != "2" || w.Header().Get("Content-Type") != "application/problem+json" ||
		!strings.Contains(w.Body.String(), `"rate_limited"`) || !strings.Contains(w.Body.String(), "10.0.0.0/24") {
		t.Fatalf("%d %v %s", w.Code, w.Header(), w.Body)
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
