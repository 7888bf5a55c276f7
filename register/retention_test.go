package register_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/register"
	"github.com/tacline/tacline/register/registertest"
	"github.com/tacline/tacline/register/sim"
	"github.com/tacline/tacline/register/wire"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// offsetClock is the wall clock moved forward by an offset tests raise, so
// that rows age past a retention while the real worker and register run.
type offsetClock struct{ off atomic.Int64 }

func (c *offsetClock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *offsetClock) advance(d time.Duration) { c.off.Add(int64(d)) }

func checkCounters(t *testing.T, db *store.DB) register.Stats {
	t.Helper()
	s, counted, err := register.CheckCounters(context.Background(), db)
	if err != nil {
		t.Fatalf("counters: %v", err)
	}
	if counted != s.Acknowledged {
		t.Fatalf("counted %d, kept %d", counted, s.Acknowledged)
	}
	return s
}

func outboxStates(t *testing.T, db *store.DB) map[string][]int64 {
	t.Helper()
	rows, err := storetest.Reader(db).Query(`SELECT state, imei14 FROM register_outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][]int64{}
	for rows.Next() {
		var s string
		var n int64
		if err := rows.Scan(&s, &n); err != nil {
			t.Fatal(err)
		}
		out[s] = append(out[s], n)
	}
	return out
}

func n14(snr uint32) int64 { m, _ := imei.New(tac, snr); return int64(m.Uint64()) }

// TestPruneDeletesOnlyOldAcknowledged: old acknowledged rows go, in
// batches; recent acknowledged, pending and rejected rows (however old)
// stay; the counters follow.
func TestPruneDeletesOnlyOldAcknowledged(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			db := ledger(t, d, 10)
			clk := &offsetClock{}
			db.SetClock(clk.now)
			_, ts := simulator(t)
			// Someone else holds IMEI 3 at the register: its registration
			// is rejected (a clone alert) and must survive any retention.
			clone := wire.Item{IdempotencyKey: "other", IMEI: imeiOf(3), TAC: imeiOf(3)[:8], Event: wire.EventRegistered,
				DeviceID: "FOREIGN", Brand: "Other", OccurredAt: time.Now()}
			b, _ := json.Marshal(wire.Request{Items: []wire.Item{clone}})
			if resp, err := http.Post(ts.URL+wire.Path, "application/json", bytes.NewReader(b)); err != nil || resp.StatusCode != 200 {
				t.Fatalf("seed clone: %v", err)
			} else {
				resp.Body.Close()
			}
			w, err := register.NewWorker(db, config(ts.URL), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			deliverAll := func() { t.Helper(); registertest.Drain(t, w.DeliverOnce) }
			bind(t, db, 0, 1, 2, 3, 4) // acknowledged now (0, 1, 2, 4), rejected (3)
			deliverAll()
			clk.advance(2 * time.Hour)
			bind(t, db, 5, 6, 7) // acknowledged two hours later
			deliverAll()
			bind(t, db, 8, 9) // never delivered: pending
			clk.advance(3 * time.Hour)

			if r := status(t, db); r.Counts[register.StateAcknowledged] != 7 || r.Pruned != 0 {
				t.Fatalf("status before pruning %+v", r)
			}
			// Older than 4h: only the first four acknowledgements.
			res, err := register.Prune(ctx, db, 4*time.Hour, 3, 0)
			if err != nil {
				t.Fatal(err)
			}
			if res.Deleted != 4 || res.Batches != 2 || res.Stats.Acknowledged != 3 || res.Stats.Pruned != 4 {
				t.Fatalf("prune %+v", res)
			}
			st := outboxStates(t, db)
			want := map[string][]int64{
				register.StateAcknowledged: {n14(5), n14(6), n14(7)},
				register.StateRejected:     {n14(3)},
				register.StatePending:      {n14(8), n14(9)},
			}
			if fmt.Sprint(st) != fmt.Sprint(want) {
				t.Fatalf("outbox after pruning %v, want %v", st, want)
			}
			s := checkCounters(t, db)
			if s.PrunedThrough == 0 {
				t.Fatalf("stats %+v", s)
			}
			// Nothing more is old enough; a maximum of batches is honoured.
			if res, err := register.Prune(ctx, db, 4*time.Hour, 3, 0); err != nil || res.Deleted != 0 || res.Batches != 0 {
				t.Fatalf("second prune %+v %v", res, err)
			}
			if res, err := register.Prune(ctx, db, time.Hour, 1, 2); err != nil || res.Deleted != 2 || res.Batches != 2 {
				t.Fatalf("bounded prune %+v %v", res, err)
			}
			r := status(t, db)
			if r.Counts[register.StateAcknowledged] != 1 || r.Pruned != 6 || r.Counts[register.StateRejected] != 1 ||
				r.Pending != 2 || r.CloneAlerts != 1 || r.LastAck == nil {
				t.Fatalf("status after pruning %+v", r)
			}
			checkCounters(t, db)
			if _, err := register.Prune(ctx, db, 0, 0, 0); !tacerr.Is(err, tacerr.InvalidInput) {
				t.Fatalf("prune with no age = %v", err)
			}
			// The pending rows are still delivered, the rejected one stays.
			deliverAll()
			if r := status(t, db); r.Pending != 0 || r.Counts[register.StateAcknowledged] != 3 || r.Counts[register.StateRejected] != 1 {
				t.Fatalf("status after delivery %+v", r)
			}
			checkCounters(t, db)
		})
	}
}

// TestPruneConcurrentWithDeliveryAndProvisioning runs provisioning, the
// real delivery worker (pruning with its retention, against a register
// that fails and drops requests) and a second pruner at once, with the
// clock racing ahead: every event reaches the register exactly once, in
// order per IMEI, and the counters match the rows throughout.
func TestPruneConcurrentWithDeliveryAndProvisioning(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			const devices = 240
			cfg := storetest.Config(t, d)
			db := ledgerAt(t, cfg, devices)
			clk := &offsetClock{}
			db.SetClock(clk.now)
			// The second pruner has its own pool, as another replica or a
			// `tacline register prune` would.
			other, err := store.Open(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			other.SetClock(clk.now)
			_, ts := simulator(t)
			setFaults(t, ts.URL, sim.Faults{FailRate: 0.1, DropRate: 0.1})
			wcfg := config(ts.URL)
			wcfg.BatchSize = 9
			wcfg.Lease = 1000 * time.Hour // the clock races; no claim may expire under a live worker
			wcfg.Retention = time.Hour
			wcfg.PruneBatch = 7
			w, err := register.NewWorker(db, wcfg, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); w.Run(ctx) }()
			stop := make(chan struct{})
			var side sync.WaitGroup
			side.Add(2)
			go func() { // the clock: ten minutes every 2 ms
				defer side.Done()
				for {
					select {
					case <-stop:
						return
					case <-time.After(2 * time.Millisecond):
						clk.advance(10 * time.Minute)
					}
				}
			}()
			var sidePruned atomic.Int64
			go func() { // another replica pruning
				defer side.Done()
				// It starts once the worker has pruned rows of its own, so
				// that the worker's pruning is shown whatever the machine's
				// scheduling (a pruner every 3 ms could otherwise take
				// every row before the worker's round); from then on both
				// prune at once.
				for {
					s, err := register.ReadStats(context.Background(), other)
					if err != nil {
						t.Errorf("read counters: %v", err)
						return
					}
					if s.Pruned > 0 {
						break
					}
					select {
					case <-stop:
						return
					case <-time.After(time.Millisecond):
					}
				}
				for {
					select {
					case <-stop:
						return
					case <-time.After(3 * time.Millisecond):
					}
					r, err := register.Prune(context.Background(), other, time.Hour, 5, 0)
					if err != nil {
						t.Errorf("side prune: %v", err)
						return
					}
					sidePruned.Add(r.Deleted)
				}
			}()
			// Provisioning: every device bound; every third one revoked.
			events := 0
			for s := uint32(0); s < devices; s++ {
				if err := registertest.TransitionErr(context.Background(), db, tac, []uint32{s}, "BOUND", store.EventIMEIBound, device(s)); err != nil {
					t.Fatal(err)
				}
				events++
				if s%3 == 0 {
					if err := registertest.TransitionErr(context.Background(), db, tac, []uint32{s}, "REVOKED", store.EventIMEIRevoked, device(s)); err != nil {
						t.Fatal(err)
					}
					events++
				}
			}
			deadline := time.Now().Add(90 * time.Second)
			for {
				r := status(t, db)
				if r.Pending == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("delivery did not finish: %+v", r)
				}
				time.Sleep(20 * time.Millisecond)
			}
			close(stop)
			side.Wait()
			cancel()
			wg.Wait()

			during := checkCounters(t, db)
			// The side pruner started after the worker's first pruned rows;
			// the worker must have pruned.
			t.Logf("pruned during the run: %d, by the side pruner %d", during.Pruned, sidePruned.Load())
			if during.Pruned <= sidePruned.Load() {
				t.Fatalf("the worker did not prune: %+v, side %d", during, sidePruned.Load())
			}
			if during.Acknowledged+during.Pruned != int64(events) {
				t.Fatalf("acknowledged %d + pruned %d != %d events", during.Acknowledged, during.Pruned, events)
			}
			if r := status(t, db); r.Counts[register.StateRejected] != 0 || r.Counts[register.StateSent] != 0 {
				t.Fatalf("status %+v", r)
			}
			// The register applied each event once, in ledger order per IMEI.
			st := simStats(t, ts.URL)
			if st.Applied != int64(events) || st.Items[wire.StatusAccepted] != int64(events) {
				t.Fatalf("sim stats %+v, want %d events applied once", st, events)
			}
			perIMEI := map[string][]string{}
			for _, a := range registertest.Applied(t, ts.URL) {
				perIMEI[a.IMEI14] = append(perIMEI[a.IMEI14], a.Event)
			}
			for s := uint32(0); s < devices; s++ {
				want := "[registered]"
				if s%3 == 0 {
					want = "[registered revoked]"
				}
				if got := fmt.Sprint(perIMEI[imei14(s)]); got != want {
					t.Fatalf("IMEI %s: register got %s, want %s", imei14(s), got, want)
				}
			}
			// Everything acknowledged may go; the counters still match. On
			// PostgreSQL a pruner skips rows another transaction holds
			// (SKIP LOCKED), and the backend of a transaction the worker's
			// cancelled context ended may still hold its rows for a moment
			// after the worker returned: prune until nothing is left to
			// prune (a pass that deletes nothing while rows remain means
			// they are held), within a minute.
			clk.advance(2 * time.Hour)
			deadline = time.Now().Add(time.Minute)
			for {
				if _, err := register.Prune(context.Background(), db, time.Hour, 0, 0); err != nil {
					t.Fatal(err)
				}
				if s := checkCounters(t, db); s.Acknowledged == 0 || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if s := checkCounters(t, db); s.Acknowledged != 0 || s.Pruned != int64(events) {
				t.Fatalf("after pruning all %+v", s)
			}
		})
	}
}

// TestExistingOutboxMigrates: a ledger at the schema before retention,
// with acknowledged rows delivered by the worker as an older tacline did,
// gets counters that match its rows when migrated.
func TestExistingOutboxMigrates(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			db := ledger(t, d, 6)
			_, ts := simulator(t)
			if err := db.MigrateDownTo(ctx, 5); err != nil {
				t.Fatal(err)
			}
			if _, err := register.ReadStats(ctx, db); err == nil {
				t.Fatal("counters present at schema version 5")
			}
			w, err := register.NewWorker(db, config(ts.URL), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			bind(t, db, 0, 1, 2, 3)
			if n, err := w.DeliverOnce(ctx); err != nil || n != 4 {
				t.Fatalf("DeliverOnce = %d, %v", n, err)
			}
			bind(t, db, 4, 5) // pending at the upgrade
			if err := db.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			if s := checkCounters(t, db); s.Acknowledged != 4 || s.Pruned != 0 || s.PrunedThrough != 0 {
				t.Fatalf("migrated counters %+v", s)
			}
			if n, err := w.DeliverOnce(ctx); err != nil || n != 2 {
				t.Fatalf("DeliverOnce after upgrade = %d, %v", n, err)
			}
			if r := status(t, db); r.Counts[register.StateAcknowledged] != 6 || r.Pending != 0 {
				t.Fatalf("status %+v", r)
			}
			checkCounters(t, db)
		})
	}
}

// TestCheckCountersFindsDrift: a counter changed behind tacline's back is
// reported.
func TestCheckCountersFindsDrift(t *testing.T) {
	db := ledger(t, store.SQLite, 2)
	err := db.InTx(context.Background(), func(tx *store.Tx) error {
		_, err := storetest.Exec(tx, `UPDATE register_outbox_stats SET value = 5 WHERE name = 'acknowledged'`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	s, counted, err := register.CheckCounters(context.Background(), db)
	if !tacerr.Is(err, tacerr.LedgerInvariant) || s.Acknowledged != 5 || counted != 0 {
		t.Fatalf("CheckCounters = %+v, %d, %v", s, counted, err)
	}
}
