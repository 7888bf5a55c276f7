package console

import (
	"net/http"
	"strings"

	"github.com/tacline/tacline/api"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/internal/ratelimit"
)

// checkData is the public check page.
type checkData struct {
	Query   string // what was typed
	Error   string // why it is not an IMEI
	Limited int    // seconds to wait when rate limited
	// LimitedSite: the limit reached is the site's (every anonymous
	// caller of an IPv4 /16 or IPv6 /48 together), not this caller's own.
	LimitedSite bool
	Down        bool // the lookup failed
	Note        *errorNote
	Result      *checkResult
}

type checkResult struct {
	IMEI, Status, Brand, Model string
}

// check serves /check: no certificate, a GET form, so /check?imei=... is a
// link a person can share.
func (c *Console) check(w http.ResponseWriter, r *http.Request) {
	d := checkData{Query: strings.TrimSpace(r.URL.Query().Get("imei"))}
	tx := c.texts
	p := &page{Title: tx.text("check.title"), Lang: tx.Lang, Nav: []navItem{{Href: "/check", Label: tx.text("check.title"), Current: true}}, Data: &d}
	status := http.StatusOK
	d.Query = clip(d.Query, 64)
	if d.Query != "" {
		m, err := imei.Parse(d.Query)
		switch {
		case err != nil:
			_, _, msg := api.PublicError(err) // what was wrong with the number, never a cause
			d.Error, status = tx.text("check.invalid", msg), http.StatusBadRequest
		default:
			l, no, err := c.cfg.Gate.PublicLookup(r.Context(), r, m)
			switch {
			case no.RetryAfter > 0:
				d.Limited, d.LimitedSite, status = no.RetryAfter, no.Limit == ratelimit.SiteLimit, http.StatusTooManyRequests
				w.Header().Set("Retry-After", itoa(int64(no.RetryAfter)))
			case err != nil:
				n := c.note(r, p, err)
				d.Down, d.Note, status = true, &n, http.StatusServiceUnavailable
			default:
				d.Result = &checkResult{IMEI: l.IMEI, Status: l.Status, Brand: l.Brand, Model: l.Model}
			}
		}
	}
	c.render(w, r, status, "check", p)
}

// clip cuts s to at most n bytes without splitting a character (a query
// echoed back on the page).
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
