package register_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tacline/tacline/register"
	"github.com/tacline/tacline/register/wire"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// TestRedirectIsNotFollowed: a register (or something in front of it)
// answering a redirect does not get the batch sent elsewhere: the worker
// follows no redirect (it would re-post the IMEIs to a host that
// register.url and its https and client-certificate checks never saw, even
// over plain http), the batch stays pending and the error names the
// redirect's target.
func TestRedirectIsNotFollowed(t *testing.T) {
	for _, code := range []int{http.StatusTemporaryRedirect, http.StatusPermanentRedirect, http.StatusFound} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			db := ledger(t, store.SQLite, 2)
			bind(t, db, 0, 1)
			_, elsewhere := simulator(t) // a register that would accept the batch
			front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, elsewhere.URL+wire.Path, code)
			}))
			t.Cleanup(front.Close)
			w, err := register.NewWorker(db, config(front.URL), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = w.DeliverOnce(context.Background())
			if !tacerr.Is(err, tacerr.Unavailable) || !strings.Contains(err.Error(), "redirect") || !strings.Contains(err.Error(), elsewhere.URL) {
				t.Fatalf("DeliverOnce = %v, want an unavailable error naming the redirect", err)
			}
			if s := simStats(t, elsewhere.URL); s.Applied != 0 {
				t.Fatalf("the redirect's target applied %d events", s.Applied)
			}
			if r := status(t, db); r.Counts[register.StatePending] != 2 || !strings.Contains(r.LastError, "redirect") {
				t.Fatalf("status %+v", r)
			}
		})
	}
}
