package register_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/register/registertest"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tacline/tacline/register"
	"github.com/tacline/tacline/register/wire"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
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

// TestHostileTextFromRegisterIsStored: what the register writes into its
// answers (a reason, a receipt id, an error page) is stored whatever its
// bytes. PostgreSQL refuses NUL and invalid UTF-8 in text: before, a
// reason or receipt holding "\u0000" failed the whole batch's recording
// (every row of it, the accepted ones too, sent again after each lease, and
// refused again, for ever), and an error page with such bytes (or cut
// inside a character) kept a failed batch claimed for the lease with no
// error recorded. A reason of any length is kept to a bounded size.
func TestHostileTextFromRegisterIsStored(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			db := ledger(t, d, 2)
			bind(t, db, 0, 1)
			var fail atomic.Bool
			fail.Store(true)
			stand := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				req, err := wire.DecodeRequest(r.Body)
				if err != nil || len(req.Items) != 2 {
					http.Error(w, "bad request", http.StatusBadRequest)
					return
				}
				if fail.Load() {
					w.WriteHeader(http.StatusServiceUnavailable)
					w.Write([]byte("down \x00\xff\xfe " + strings.Repeat("é", 200)))
					return
				}
				fmt.Fprintf(w, `{"results":[{"idempotency_key":%q,"status":"invalid","reason":"bad\u0000name \ud800 %s"},`+
					`{"idempotency_key":%q,"status":"accepted","receipt_id":"R\u00001"}]}`,
					req.Items[0].IdempotencyKey, strings.Repeat("x", 10000), req.Items[1].IdempotencyKey)
			}))
			t.Cleanup(stand.Close)
			cfg := config(stand.URL)
			cfg.Backoff = register.Backoff{Initial: time.Nanosecond, Max: time.Nanosecond}
			var logged bytes.Buffer
			w, err := register.NewWorker(db, cfg, nil, slog.New(slog.NewTextHandler(&logged, nil)))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if _, err := w.DeliverOnce(ctx); !tacerr.Is(err, tacerr.Unavailable) || !strings.Contains(err.Error(), "503") {
				t.Fatalf("DeliverOnce against a 503 = %v", err)
			}
			r := status(t, db)
			if r.Counts[register.StatePending] != 2 || !strings.Contains(r.LastError, "503") || !utf8.ValidString(r.LastError) {
				t.Fatalf("after a 503 with a hostile body: status %+v", r)
			}
			fail.Store(false)
			time.Sleep(time.Millisecond)
			if n, err := w.DeliverOnce(ctx); err != nil || n != 2 {
				t.Fatalf("DeliverOnce = %d, %v", n, err)
			}
			r = status(t, db)
			if r.Counts[register.StateRejected] != 1 || r.Counts[register.StateAcknowledged] != 1 || r.Pending != 0 {
				t.Fatalf("status %+v", r)
			}
			reason := r.RecentRejections[0].Reason
			if !strings.HasPrefix(reason, "invalid: bad") || strings.ContainsRune(reason, 0) || len(reason) > 600 {
				t.Fatalf("reason %q (%d bytes)", reason, len(reason))
			}
			if r.LastAck == nil || !strings.HasPrefix(r.LastAck.ReceiptID, "R") || strings.ContainsRune(r.LastAck.ReceiptID, 0) {
				t.Fatalf("last ack %+v", r.LastAck)
			}
			// The log says it as stored: bounded (before, the whole reason,
			// 10,000 bytes here, up to the 8 MiB an answer may hold).
			var line string
			for _, l := range strings.Split(logged.String(), "\n") {
				if strings.Contains(l, "register rejected an event") {
					line = l
				}
			}
			if !strings.Contains(line, "reason=\"invalid: bad") || len(line) > 1000 {
				t.Fatalf("rejection logged as %d bytes: %.300q", len(line), line)
			}
		})
	}
}

// TestRetryAfterHoldsDelivery: a register that answers 429 (or 503) with
// Retry-After is not asked again before that time, for the batch's events
// nor for any other (it throttles tacline, not an event); before, the
// worker retried after its own backoff (1 ms here) and sent the next batch
// at once, until the circuit breaker opened.
func TestRetryAfterHoldsDelivery(t *testing.T) {
	for _, code := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			db := ledger(t, store.SQLite, 3)
			bind(t, db, 0, 1, 2)
			var requests atomic.Int64
			stand := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				requests.Add(1)
				w.Header().Set("Retry-After", "120")
				http.Error(w, "slow down", code)
			}))
			t.Cleanup(stand.Close)
			cfg := config(stand.URL)
			cfg.BatchSize = 1
			cfg.Backoff.Max = 5 * time.Minute // bounds a Retry-After too
			w, err := register.NewWorker(db, cfg, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			if err := w.Run(ctx); err != nil {
				t.Fatal(err)
			}
			if n := requests.Load(); n != 1 {
				t.Fatalf("the register was asked %d times within 300ms of a Retry-After of 120s", n)
			}
			var next int64
			if err := storetest.Reader(db).Get(&next, `SELECT MAX(next_attempt_at) FROM register_outbox`); err != nil {
				t.Fatal(err)
			}
			if due := time.UnixMicro(next); due.Before(start.Add(119 * time.Second)) {
				t.Fatalf("the throttled batch is due again at %v, %v after the start", due, due.Sub(start))
			}
			if r := status(t, db); r.Pending != 3 || !strings.Contains(r.LastError, strconv.Itoa(code)) {
				t.Fatalf("status %+v", r)
			}
		})
	}
}

// TestRefusedEventIsolated: a register that refuses (400) every batch
// holding one event it cannot take gets the other events in smaller
// batches and that one rejected with its answer, instead of the whole
// outbox held behind it for ever; a register that refuses every batch
// rejects nothing.
func TestRefusedEventIsolated(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			db := ledger(t, d, 20)
			snrs := make([]uint32, 20)
			for i := range snrs {
				snrs[i] = uint32(i)
			}
			bind(t, db, snrs...)
			poison := imeiOf(7)
			var refuseAll atomic.Bool
			_, real := simulator(t)
			front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				if refuseAll.Load() || strings.Contains(string(body), poison) {
					http.Error(w, "item 3: field model: not in the register's catalogue", http.StatusBadRequest)
					return
				}
				resp, err := http.Post(real.URL+wire.Path, "application/json", bytes.NewReader(body))
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadGateway)
					return
				}
				defer resp.Body.Close()
				w.WriteHeader(resp.StatusCode)
				io.Copy(w, resp.Body)
			}))
			t.Cleanup(front.Close)

			// everything refused: nothing is rejected
			refuseAll.Store(true)
			w, err := register.NewWorker(db, config(front.URL), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 30; i++ {
				w.DeliverOnce(context.Background())
				time.Sleep(6 * time.Millisecond) // past the test backoff
			}
			if r := status(t, db); r.Counts[register.StateRejected] != 0 || r.Counts[register.StatePending] != 20 {
				t.Fatalf("a register refusing every batch: %+v, want all 20 events pending and none rejected", r.Counts)
			}

			// only the batches with the poison event refused; a backoff
			// long enough that other batches go while it waits
			refuseAll.Store(false)
			cfg := config(front.URL)
			cfg.Backoff = register.Backoff{Initial: 30 * time.Millisecond, Max: 30 * time.Millisecond}
			w, err = register.NewWorker(db, cfg, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			for give := time.Now().Add(time.Minute); status(t, db).Counts[register.StatePending] > 0 && time.Now().Before(give); {
				if n, _ := w.DeliverOnce(context.Background()); n == 0 {
					time.Sleep(2 * time.Millisecond)
				}
			}
			r := status(t, db)
			if r.Counts[register.StateAcknowledged] != 19 || r.Counts[register.StateRejected] != 1 || r.Counts[register.StatePending] != 0 {
				t.Fatalf("counts %+v, want 19 acknowledged and the refused event rejected", r.Counts)
			}
			if s := simStats(t, real.URL); s.Applied != 19 {
				t.Fatalf("the register applied %d events, want 19", s.Applied)
			}
		})
	}
}

// TestRequeueKeepsOrder: the rejected registration of an IMEI is not sent
// again once a later event of the IMEI (its revocation) was acknowledged:
// the register would apply the registration after the revocation and undo
// it. While the later event is still pending, requeueing is fine: the
// registration goes first.
func TestRequeueKeepsOrder(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			db := ledger(t, d, 2)
			ctx := context.Background()
			var conflict atomic.Bool
			var got []string // events in the order the register received them
			var mu sync.Mutex
			stand := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				req, err := wire.DecodeRequest(r.Body)
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				var resp wire.Response
				mu.Lock()
				for _, it := range req.Items {
					res := wire.Result{IdempotencyKey: it.IdempotencyKey, Status: wire.StatusAccepted, ReceiptID: "r-" + it.IdempotencyKey}
					if conflict.Load() {
						res = wire.Result{IdempotencyKey: it.IdempotencyKey, Status: wire.StatusConflict, Reason: "held by another device"}
					} else {
						got = append(got, it.IMEI[:14]+" "+it.Event)
					}
					resp.Results = append(resp.Results, res)
				}
				mu.Unlock()
				json.NewEncoder(w).Encode(resp)
			}))
			t.Cleanup(stand.Close)
			w, err := register.NewWorker(db, config(stand.URL), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			m0, _ := imei.New(tac, 0)
			m1, _ := imei.New(tac, 1)
			// both registrations refused, then both devices revoked
			conflict.Store(true)
			bind(t, db, 0, 1)
			if n, err := w.DeliverOnce(ctx); err != nil || n != 2 {
				t.Fatalf("DeliverOnce = %d, %v", n, err)
			}
			conflict.Store(false)
			registertest.Transition(t, db, tac, []uint32{0, 1}, "REVOKED", store.EventIMEIRevoked, "")
			// IMEI 1: requeued while its revocation is pending: it goes first
			if n, err := register.Requeue(ctx, db, m1, "test"); err != nil || n != 1 {
				t.Fatalf("Requeue with the later event pending = %d, %v", n, err)
			}
			for i := 0; i < 5; i++ {
				if _, err := w.DeliverOnce(ctx); err != nil {
					t.Fatal(err)
				}
			}
			// in outbox order: IMEI 1's registration before its revocation
			want := []string{imei14(1) + " " + wire.EventRegistered, imei14(0) + " " + wire.EventRevoked, imei14(1) + " " + wire.EventRevoked}
			mu.Lock()
			if strings.Join(got, "|") != strings.Join(want, "|") {
				t.Errorf("the register received %q, want %q", got, want)
			}
			mu.Unlock()
			// IMEI 0: its revocation was acknowledged; the registration
			// must not follow it
			_, err = register.Requeue(ctx, db, m0, "test")
			if !tacerr.Is(err, tacerr.Conflict) || !strings.Contains(err.Error(), "out of order") {
				t.Fatalf("Requeue after the later event was acknowledged = %v, want conflict", err)
			}
			if r := status(t, db); r.Counts[register.StateRejected] != 1 || r.Counts[register.StatePending] != 0 {
				t.Fatalf("status %+v: the refused requeue changed the outbox", r.Counts)
			}
		})
	}
}
