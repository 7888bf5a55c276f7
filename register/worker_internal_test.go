package register

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/tacline/tacline/register/registertest"
	"github.com/tacline/tacline/register/wire"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// clock is a settable clock for the store.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func fixture(t *testing.T, d store.Dialect, url string) (*store.DB, *clock, Config) {
	t.Helper()
	db := storetest.Open(t, d)
	clk := &clock{t: time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)}
	db.SetClock(clk.now)
	db.AddSink(Outbox{})
	registertest.Seed(t, db, 1234500, []registertest.Row{{SNR: 1, State: "RESERVED", Device: "A"}, {SNR: 2, State: "RESERVED", Device: "B"}})
	registertest.Transition(t, db, 1234500, []uint32{1}, "BOUND", store.EventIMEIBound, "A")
	registertest.Transition(t, db, 1234500, []uint32{2}, "BOUND", store.EventIMEIBound, "B")
	cfg := Config{URL: url, BatchAge: time.Nanosecond, Timeout: time.Second, Lease: 10 * time.Second,
		Backoff: Backoff{Initial: time.Second, Max: 8 * time.Second}, Breaker: Breaker{Failures: 2, Cooldown: time.Hour}}
	return db, clk, cfg
}

// closedURL is an address nothing listens on.
func closedURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func TestBreakerOpensAndBackoffGrows(t *testing.T) {
	db, clk, cfg := fixture(t, store.SQLite, closedURL(t))
	w, err := NewWorker(db, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 1; i <= 2; i++ {
		clk.add(time.Minute) // past the batch age and any backoff
		if _, err := w.step(ctx); err == nil {
			t.Fatalf("step %d reached a register that is down", i)
		}
	}
	// Two failures open the breaker: no attempt for the cooldown.
	wait, err := w.step(ctx)
	if err != nil || wait < 59*time.Minute {
		t.Fatalf("step with the breaker open = %s, %v", wait, err)
	}
	var attempts int
	if err := storetest.Reader(db).Get(&attempts, `SELECT MAX(attempts) FROM register_outbox`); err != nil || attempts != 2 {
		t.Fatalf("attempts = %d (%v), want 2", attempts, err)
	}
	for _, tc := range []struct {
		name     string
		attempts int
		lo, hi   time.Duration
	}{
		{"first", 1, 0, time.Second},
		{"third", 3, 0, 4 * time.Second},
		{"capped", 30, 0, 8 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 20 {
				if d := w.backoff(tc.attempts); d < tc.lo || d > tc.hi {
					t.Fatalf("backoff(%d) = %s, want %s..%s", tc.attempts, d, tc.lo, tc.hi)
				}
			}
		})
	}
}

func TestExpiredClaimIsTakenOver(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			db, clk, cfg := fixture(t, d, "http://127.0.0.1:1")
			a, _ := NewWorker(db, cfg, nil, nil)
			b, _ := NewWorker(db, cfg, nil, nil)
			ctx := context.Background()
			rowsA, err := a.claim(ctx, "A")
			if err != nil || len(rowsA) != 2 {
				t.Fatalf("claim A = %d rows, %v", len(rowsA), err)
			}
			// While A's lease runs, B gets nothing.
			if rows, err := b.claim(ctx, "B"); err != nil || len(rows) != 0 {
				t.Fatalf("claim B during A's lease = %d rows, %v", len(rows), err)
			}
			// A dies; after its lease, B takes the rows over.
			clk.add(cfg.Lease + time.Second)
			rowsB, err := b.claim(ctx, "B")
			if err != nil || len(rowsB) != 2 || rowsB[0].Key != rowsA[0].Key || rowsB[0].Attempts != 2 {
				t.Fatalf("claim B after the lease = %+v, %v", rowsB, err)
			}
			// A's late answer must not overwrite B's claim.
			res := wire.Response{Results: []wire.Result{
				{IdempotencyKey: rowsA[0].Key, Status: wire.StatusAccepted, ReceiptID: "late"},
				{IdempotencyKey: rowsA[1].Key, Status: wire.StatusAccepted, ReceiptID: "late"}}}
			if err := a.record(ctx, "A", rowsA, res); err != nil {
				t.Fatal(err)
			}
			var sent int
			if err := storetest.Reader(db).Get(&sent, `SELECT COUNT(*) FROM register_outbox WHERE state = 'sent' AND claimed_by = 'B'`); err != nil || sent != 2 {
				t.Fatalf("rows still claimed by B = %d (%v)", sent, err)
			}
		})
	}
}

// TestWorkerPrunesPastRetention: the delivery loop deletes acknowledged
// rows past register.retention once per PruneInterval, in batches, and
// never with retention 0.
func TestWorkerPrunesPastRetention(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			db, clk, cfg := fixture(t, d, "http://127.0.0.1:1")
			ctx := context.Background()
			keep, _ := NewWorker(db, cfg, nil, nil) // retention 0: forever
			rows, err := keep.claim(ctx, "K")
			if err != nil || len(rows) != 2 {
				t.Fatalf("claim = %d rows, %v", len(rows), err)
			}
			res := wire.Response{Results: []wire.Result{
				{IdempotencyKey: rows[0].Key, Status: wire.StatusAccepted, ReceiptID: "R1"},
				{IdempotencyKey: rows[1].Key, Status: wire.StatusAccepted, ReceiptID: "R2"}}}
			if err := keep.record(ctx, "K", rows, res); err != nil {
				t.Fatal(err)
			}
			acked := func() (n int) {
				t.Helper()
				if err := storetest.Reader(db).Get(&n, `SELECT COUNT(*) FROM register_outbox WHERE state = 'acknowledged'`); err != nil {
					t.Fatal(err)
				}
				return n
			}
			clk.add(1000 * time.Hour)
			keep.maybePrune(ctx)
			if n := acked(); n != 2 {
				t.Fatalf("retention 0 pruned: %d acknowledged rows left", n)
			}

			cfg.Retention, cfg.PruneBatch = 1000*time.Hour+10*time.Second, 1
			w, err := NewWorker(db, cfg, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			w.maybePrune(ctx) // acknowledged 1000h ago: kept
			if n := acked(); n != 2 {
				t.Fatalf("%d acknowledged rows left, want 2", n)
			}
			clk.add(30 * time.Second)
			w.maybePrune(ctx) // old enough, but within PruneInterval of the last round: kept
			if n := acked(); n != 2 {
				t.Fatalf("pruned before the interval: %d left", n)
			}
			clk.add(PruneInterval)
			w.maybePrune(ctx)
			s, err := ReadStats(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			if n := acked(); n != 0 || s.Pruned != 2 || s.Acknowledged != 0 {
				t.Fatalf("after the round: %d acknowledged rows, stats %+v", n, s)
			}
		})
	}
}
