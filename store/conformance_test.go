package store_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tacline/tacline/catalog"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/lifecycle"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// The conformance suite: every test runs on SQLite and on a fresh PostgreSQL
// database (storetest.ForEachLedger).
const testTAC = 100010

func testTACRecord(tac uint32, perDevice int) catalog.TAC {
	return catalog.TAC{TAC: tac, Brand: "Example Devices", ModelName: "EX-1", DeviceType: "Smartphone",
		RadioInterfaces: []string{"LTE", "NR"}, IMEIsPerDevice: perDevice,
		AllocationDate: time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC),
		Approvals:      []catalog.Approval{{Market: "DE", Reference: "BNetzA-1", ValidFrom: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}}
}

func seed(t testing.TB, db *store.DB, start, end uint32) store.Pool {
	t.Helper()
	ctx := context.Background()
	if err := db.AddTACs(ctx, []catalog.TAC{testTACRecord(testTAC, 2)}, "test"); err != nil {
		t.Fatal(err)
	}
	p, err := db.CreatePool(ctx, store.Pool{Name: "A", TAC: testTAC, SNRStart: start, SNREnd: end, Factory: "F1", Line: "L1", Product: "EX-1", Market: "DE"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func reserve(db *store.DB, id, pool string, n int) (*store.Reservation, error) {
	return db.Reserve(context.Background(), store.ReserveRequest{RequestID: id, RequestHash: []byte(id), Pool: pool,
		Caller: "S1", Kind: store.KindProvision, DeviceSerial: "dev-" + id, PerDevice: n})
}

func mustCheck(t testing.TB, db *store.DB) store.CheckReport {
	t.Helper()
	rep, err := db.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("ledger check: %v", rep.Violations)
	}
	return rep
}

func wantCode(t *testing.T, err error, code tacerr.Code) *tacerr.Error {
	t.Helper()
	e, ok := tacerr.As(err)
	if !ok || e.Code != code {
		t.Fatalf("error = %v, want code %s", err, code)
	}
	return e
}

func TestCatalogue(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		a, b := testTACRecord(100011, 1), testTACRecord(100012, 2)
		if err := db.AddTACs(ctx, []catalog.TAC{a, b}, "test"); err != nil {
			t.Fatal(err)
		}
		got, err := db.TACs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[1].TAC != 100012 || got[1].IMEIsPerDevice != 2 || len(got[1].Approvals) != 1 ||
			strings.Join(got[0].RadioInterfaces, ",") != "LTE,NR" || !got[0].AllocationDate.Equal(a.AllocationDate) {
			t.Fatalf("TACs() = %+v", got)
		}
		// A failed import writes nothing: the second record collides.
		c := testTACRecord(100013, 1)
		err = db.AddTACs(ctx, []catalog.TAC{c, a}, "test")
		wantCode(t, err, tacerr.Conflict)
		if _, err := db.TAC(ctx, 100013); !tacerr.Is(err, tacerr.TACUnknown) {
			t.Fatalf("TAC of a failed import = %v, want tac_unknown", err)
		}
		bad := testTACRecord(100014, 9)
		wantCode(t, db.AddTACs(ctx, []catalog.TAC{bad}, "test"), tacerr.InvalidInput)
	})
}

func TestPools(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 499999)
		for _, tc := range []struct {
			name string
			p    store.Pool
			code tacerr.Code
		}{
			{"overlap inside", store.Pool{Name: "B", TAC: testTAC, SNRStart: 1000, SNREnd: 2000}, tacerr.PoolOverlap},
			{"overlap edge", store.Pool{Name: "B", TAC: testTAC, SNRStart: 499999, SNREnd: 600000}, tacerr.PoolOverlap},
			{"name taken", store.Pool{Name: "A", TAC: testTAC, SNRStart: 500000, SNREnd: 600000}, tacerr.Conflict},
			{"unknown tac", store.Pool{Name: "C", TAC: 100099, SNRStart: 0, SNREnd: 10}, tacerr.TACUnknown},
			{"reversed", store.Pool{Name: "D", TAC: testTAC, SNRStart: 10, SNREnd: 5}, tacerr.InvalidInput},
			{"bad name", store.Pool{Name: "a b", TAC: testTAC, SNRStart: 0, SNREnd: 5}, tacerr.InvalidInput},
		} {
			_, err := db.CreatePool(ctx, tc.p, "test")
			if !tacerr.Is(err, tc.code) {
				t.Errorf("%s: CreatePool = %v, want %s", tc.name, err, tc.code)
			}
		}
		if _, err := db.CreatePool(ctx, store.Pool{Name: "B", TAC: testTAC, SNRStart: 500000, SNREnd: 999999}, "test"); err != nil {
			t.Fatal(err)
		}
		// The database itself refuses an overlapping pool, whatever the code does.
		err := rawExec(db, `INSERT INTO pools (name, tac, snr_start, snr_end, next_snr, created_at) VALUES ('X', 100010, 10, 20, 10, 0)`)
		if err == nil {
			t.Fatal("database accepted an overlapping pool")
		}
		ps, err := db.Pools(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) != 2 || ps[0].Free != 500000 || ps[1].SNRStart != 500000 {
			t.Fatalf("Pools() = %+v", ps)
		}
	})
}

// rawExec runs SQL on the write pool, bypassing the store's code.
func rawExec(db *store.DB, q string) error {
	return db.InTx(context.Background(), func(tx *store.Tx) error {
		_, err := storetest.Exec(tx, q)
		return err
	})
}

func TestReserveSequentialReplayConflict(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		seed(t, db, 100, 199)
		r1, err := reserve(db, "r1", "A", 2)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := reserve(db, "r2", "A", 1)
		if err != nil {
			t.Fatal(err)
		}
		if got := []uint32{r1.Devices[0][0].SNR(), r1.Devices[0][1].SNR(), r2.Devices[0][0].SNR()}; fmt.Sprint(got) != "[100 101 102]" {
			t.Fatalf("SNRs = %v, want [100 101 102]", got)
		}
		if r1.Devices[0][0].TAC() != testTAC || r1.Replayed {
			t.Fatalf("r1 = %+v", r1)
		}
		again, err := reserve(db, "r1", "A", 2)
		if err != nil {
			t.Fatal(err)
		}
		if !again.Replayed || again.ID != r1.ID || again.Devices[0][1] != r1.Devices[0][1] {
			t.Fatalf("replay = %+v, want the original reservation", again)
		}
		_, err = db.Reserve(context.Background(), store.ReserveRequest{RequestID: "r1", RequestHash: []byte("other"), Pool: "A",
			Caller: "S1", Kind: store.KindProvision, DeviceSerial: "dev-r1", PerDevice: 2})
		wantCode(t, err, tacerr.RequestConflict)
		_, err = db.Reserve(context.Background(), store.ReserveRequest{RequestID: "r9", RequestHash: []byte("r9"), Pool: "A",
			Caller: "S1", Kind: store.KindProvision, DeviceSerial: "dev-r1", PerDevice: 1})
		wantCode(t, err, tacerr.DeviceAlreadyProvisioned)
		_, err = reserve(db, "r3", "nope", 1)
		wantCode(t, err, tacerr.PoolNotFound)
		_, err = reserve(db, "r4", "A", 6)
		wantCode(t, err, tacerr.InvalidInput)
		rep := mustCheck(t, db)
		if rep.IMEIs != 3 {
			t.Fatalf("check counted %d IMEIs, want 3", rep.IMEIs)
		}
	})
}

func TestReserveExhaustionFailsWhole(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		seed(t, db, 0, 2)
		if _, err := reserve(db, "a", "A", 2); err != nil {
			t.Fatal(err)
		}
		_, err := reserve(db, "b", "A", 2)
		e := wantCode(t, err, tacerr.PoolExhausted)
		if !strings.Contains(e.Message, "1 SNRs left") || !strings.Contains(e.Message, `"A"`) {
			t.Fatalf("message %q does not name the pool and what remains", e.Message)
		}
		// Nothing was taken: the last SNR is still there for a request of 1.
		r, err := reserve(db, "c", "A", 1)
		if err != nil {
			t.Fatal(err)
		}
		if r.Devices[0][0].SNR() != 2 {
			t.Fatalf("SNR = %d, want 2", r.Devices[0][0].SNR())
		}
		mustCheck(t, db)
	})
}

func TestTransitionsAndNoReuse(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 99)
		sink := &recordingSink{}
		db.AddSink(sink)
		r1, _ := reserve(db, "a", "A", 2)
		r2, _ := reserve(db, "b", "A", 1)
		err := db.InTx(ctx, func(tx *store.Tx) error { return tx.Bind(r1.Devices[0], "dev-a", "c0ffee", "S1", "a") })
		if err != nil {
			t.Fatal(err)
		}
		if err := db.InTx(ctx, func(tx *store.Tx) error { return tx.Void(r2.Devices[0], "scrapped", "dropped", "op", "") }); err != nil {
			t.Fatal(err)
		}
		// Invalid transitions are refused by the code and by the database.
		err = db.InTx(ctx, func(tx *store.Tx) error { return tx.Bind(r2.Devices[0], "dev-b", "c1", "S1", "b") })
		wantCode(t, err, tacerr.InvalidState)
		if err := rawExec(db, `UPDATE imeis SET state = 'RESERVED' WHERE state = 'VOIDED'`); err == nil {
			t.Fatal("database allowed VOIDED -> RESERVED")
		}
		if err := rawExec(db, `DELETE FROM imeis`); err == nil {
			t.Fatal("database allowed deleting ledger rows")
		}
		// Voided SNRs are never handed out again.
		r3, _ := reserve(db, "c", "A", 1)
		if r3.Devices[0][0].SNR() != 3 {
			t.Fatalf("next SNR after a void = %d, want 3", r3.Devices[0][0].SNR())
		}
		if err := db.InTx(ctx, func(tx *store.Tx) error { return tx.Revoke(r1.Devices[0], "stolen", "op", "") }); err != nil {
			t.Fatal(err)
		}
		rec, err := db.LookupIMEI(ctx, r1.Devices[0][1])
		if err != nil {
			t.Fatal(err)
		}
		if rec.State != store.StateRevoked || rec.DeviceSerial != "dev-a" || rec.CertSerial != "c0ffee" || rec.Reason != "stolen" || rec.BoundAt.IsZero() {
			t.Fatalf("record = %+v", rec)
		}
		devs, err := db.DeviceIMEIs(ctx, "dev-a")
		if err != nil || len(devs) != 2 {
			t.Fatalf("DeviceIMEIs = %v, %v", devs, err)
		}
		mustCheck(t, db)
		got := sink.types()
		// The sink was added after seeding: it sees the reservations onwards.
		if want := "imei.reserved imei.reserved imei.bound imei.voided imei.reserved imei.revoked"; got != want {
			t.Fatalf("events = %q", got)
		}
	})
}

type recordingSink struct {
	mu     sync.Mutex
	events []store.Event
}

func (s *recordingSink) Append(tx *store.Tx, evs []store.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, evs...)
	return nil
}

func (s *recordingSink) types() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.events {
		out = append(out, e.Type)
	}
	return strings.Join(out, " ")
}

func TestCheckFindsAGap(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		seed(t, db, 0, 99)
		reserve(db, "a", "A", 2)
		// Move the high-water mark without rows, as a buggy writer would.
		if err := rawExec(db, `UPDATE pools SET next_snr = 5`); err != nil {
			t.Fatal(err)
		}
		rep, err := db.Check(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if rep.OK() || !strings.Contains(rep.Violations[0], "SNR 000002 has no ledger row") {
			t.Fatalf("violations = %v", rep.Violations)
		}
	})
}

func TestConcurrentReservations(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		seed(t, db, 0, 999999)
		const workers, each = 64, 20
		var wg sync.WaitGroup
		var mu sync.Mutex
		seen := map[imei.IMEI]string{}
		errs := make(chan error, workers)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < each; i++ {
					id := fmt.Sprintf("w%d-%d", w, i)
					r, err := reserve(db, id, "A", 1+(w+i)%3)
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					for _, m := range r.Devices[0] {
						if prev, dup := seen[m]; dup {
							errs <- fmt.Errorf("IMEI %s given to %s and %s", m, prev, id)
						}
						seen[m] = id
					}
					mu.Unlock()
				}
			}(w)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		rep := mustCheck(t, db)
		if rep.IMEIs != int64(len(seen)) {
			t.Fatalf("ledger holds %d IMEIs, callers received %d", rep.IMEIs, len(seen))
		}
	})
}

// TestPoolHeads: PoolHeads gives the same high-water marks and free counts
// as Pools, in the same order, without usage counts (it reads no IMEI row).
func TestPoolHeads(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 100, 199)
		if _, err := db.CreatePool(ctx, store.Pool{Name: "B", TAC: testTAC, SNRStart: 500, SNREnd: 599}, "test"); err != nil {
			t.Fatal(err)
		}
		if _, err := reserve(db, "r1", "A", 3); err != nil {
			t.Fatal(err)
		}
		full, err := db.Pools(ctx)
		if err != nil {
			t.Fatal(err)
		}
		heads, err := db.PoolHeads(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(heads) != 2 || len(full) != 2 {
			t.Fatalf("PoolHeads = %+v, Pools = %+v", heads, full)
		}
		for i := range heads {
			h, f := heads[i], full[i]
			if h.Name != f.Name || h.NextSNR != f.NextSNR || h.Free != f.Free || h.Reserved != 0 || h.Bound != 0 {
				t.Fatalf("PoolHeads[%d] = %+v, Pools[%d] = %+v", i, h, i, f)
			}
		}
		if full[0].Reserved != 3 || heads[0].Free != 97 || heads[1].Free != 100 {
			t.Fatalf("after reserving 3 of pool A: Pools = %+v, PoolHeads = %+v", full, heads)
		}
	})
}

// TestPoolsNamed: PoolsNamed gives the named pools exactly what Pools gives
// them (usage counts by state included), in Pools' order, leaving out
// names that are no pool and the pools not named.
func TestPoolsNamed(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 100, 199)
		for _, p := range []store.Pool{
			{Name: "B", TAC: testTAC, SNRStart: 500, SNREnd: 599},
			{Name: "C", TAC: testTAC, SNRStart: 700, SNREnd: 799},
		} {
			if _, err := db.CreatePool(ctx, p, "test"); err != nil {
				t.Fatal(err)
			}
		}
		ra, err := reserve(db, "r1", "A", 2)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reserve(db, "r2", "A", 1); err != nil {
			t.Fatal(err)
		}
		if _, err := reserve(db, "r3", "C", 2); err != nil {
			t.Fatal(err)
		}
		// One of pool A's IMEIs voided: counted as voided, not reserved.
		if err := db.InTx(ctx, func(tx *store.Tx) error {
			return tx.Void(ra.Devices[0][:1], lifecycle.VoidTest, "test", "test", "")
		}); err != nil {
			t.Fatal(err)
		}
		full, err := db.Pools(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got, err := db.PoolsNamed(ctx, []string{"C", "nope", "A"})
		if err != nil {
			t.Fatal(err)
		}
		want := []store.PoolStats{full[0], full[2]}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("PoolsNamed(C, nope, A) = %+v\nwant (from Pools) %+v", got, want)
		}
		if got[0].Reserved != 2 || got[0].Voided != 1 || got[1].Reserved != 2 || got[1].Free != 98 {
			t.Fatalf("PoolsNamed counts = %+v", got)
		}
		if none, err := db.PoolsNamed(ctx, nil); err != nil || len(none) != 0 {
			t.Fatalf("PoolsNamed(nil) = %+v, %v", none, err)
		}
	})
}
