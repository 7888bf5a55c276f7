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
// rate_limited problem naming its bucket and the limit that refused it:
// its own (/24, /56) or its site's (/16, /48).
func TestLimitedAnswer(t *testing.T) {
	for _, tc := range []struct{ name, first, sameNet, otherNet, sameSite, net, site string }{
		{"IPv4", "10.0.0.1:5555", "10.0.0.2:5555", "10.0.1.1:5555", "10.0.2.1:5555", "net:10.0.0.0/24", "site:10.0.0.0/16"},
		{"IPv6", "[2001:db8:aa::1]:5555", "[2001:db8:aa:1::2]:5555", "[2001:db8:aa:100::1]:5555", "[2001:db8:aa:ff00::1]:5555", "net:2001:db8:aa::/56", "site:2001:db8:aa::/48"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Unix(1_700_000_000, 0)
			l := ratelimit.NewWithClock(ratelimit.Tier{Rate: 0.5, Burst: 1}, ratelimit.Tier{Rate: 0.25, Burst: 2}, func() time.Time { return now })
			ask := func(addr string) *httptest.ResponseRecorder {
				r := httptest.NewRequest("GET", "/v1/lookup/x", nil)
				r.RemoteAddr = addr
				h := limited(l, r, "")
				if h == nil {
					return nil
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				return w
			}
			for _, step := range []struct {
				addr, retry, want string // retry "": admitted
			}{
				{tc.first, "", ""},
				{tc.sameNet, "2", `too many requests from ` + tc.net + `: the per-caller limit`},
				{tc.otherNet, "", ""},
				{tc.sameSite, "4", `too many requests from ` + tc.site + `: the per-site limit`},
			} {
				w := ask(step.addr)
				if step.retry == "" {
					if w != nil {
						t.Fatalf("%s refused: %s", step.addr, w.Body)
					}
					continue
				}
				if w == nil || w.Code != 429 || w.Header().Get("Retry-After") != step.retry || w.Header().Get("Content-Type") != "application/problem+json" ||
					!strings.Contains(w.Body.String(), `"rate_limited"`) || !strings.Contains(w.Body.String(), step.want) {
					t.Fatalf("%s: %v, want 429 Retry-After %s %q", step.addr, w, step.retry, step.want)
				}
			}
		})
	}
}

// TestAuthenticityConfigValidate: each rate-limit field is named when
// wrong, and a site's allowance is at least its callers'.
func TestAuthenticityConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mut   func(*AuthenticityConfig)
		field string
	}{
		{"public rate", func(c *AuthenticityConfig) { c.PublicRate = 0 }, "authenticity.public_rate"},
		{"public burst", func(c *AuthenticityConfig) { c.PublicBurst = 0 }, "authenticity.public_burst"},
		{"public site rate below the caller's", func(c *AuthenticityConfig) { c.PublicSiteRate = c.PublicRate / 2 }, "authenticity.public_site_rate"},
		{"public site burst below the caller's", func(c *AuthenticityConfig) { c.PublicSiteBurst = c.PublicBurst - 1 }, "authenticity.public_site_burst"},
		{"lookup rate", func(c *AuthenticityConfig) { c.LookupRate = -1 }, "authenticity.lookup_rate"},
		{"lookup burst", func(c *AuthenticityConfig) { c.LookupBurst = 0 }, "authenticity.lookup_burst"},
		{"lookup site rate missing", func(c *AuthenticityConfig) { c.LookupSiteRate = 0 }, "authenticity.lookup_site_rate"},
		{"lookup site burst below the caller's", func(c *AuthenticityConfig) { c.LookupSiteBurst = 1 }, "authenticity.lookup_site_burst"},
	} {
		c := DefaultAuthenticityConfig()
		tc.mut(&c)
		err := c.Validate()
		if e, ok := tacerr.As(err); !ok || e.Code != tacerr.InvalidConfig || e.Field != tc.field {
			t.Errorf("%s: %v, want invalid_config on %s", tc.name, err, tc.field)
		}
	}
	if err := DefaultAuthenticityConfig().Validate(); err != nil {
		t.Fatal(err)
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
