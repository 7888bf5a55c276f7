package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/lifecycle"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// wantPoolCounts fails t unless Pools and PoolsNamed give every pool, and
// Leases every lease, the per-state counts a full count of its ledger rows
// gives, and returns Pools' figures by pool name.
func wantPoolCounts(t *testing.T, db *store.DB) map[string]store.PoolStats {
	t.Helper()
	ctx := context.Background()
	ps, err := db.Pools(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var rows []struct {
		Name  string `db:"name"`
		State string `db:"state"`
		N     int64  `db:"n"`
	}
	if err := storetest.Reader(db).Select(&rows, `SELECT p.name, i.state, COUNT(*) AS n FROM imeis i JOIN pools p ON p.id = i.pool_id
		GROUP BY p.name, i.state`); err != nil {
		t.Fatal(err)
	}
	counted := map[string]map[string]int64{}
	for _, r := range rows {
		if counted[r.Name] == nil {
			counted[r.Name] = map[string]int64{}
		}
		counted[r.Name][r.State] = r.N
	}
	out := map[string]store.PoolStats{}
	var names []string
	for _, p := range ps {
		c := counted[p.Name]
		got := [4]int64{p.Reserved, p.Bound, p.Voided, p.Revoked}
		want := [4]int64{c["RESERVED"], c["BOUND"], c["VOIDED"], c["REVOKED"]}
		if got != want {
			t.Errorf("pool %s: Pools counts reserved, bound, voided, revoked %v; its rows hold %v", p.Name, got, want)
		}
		out[p.Name] = p
		names = append(names, p.Name)
	}
	named, err := db.PoolsNamed(ctx, names)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range named {
		if out[p.Name] != p {
			t.Errorf("PoolsNamed gives %+v, Pools %+v", p, out[p.Name])
		}
	}
	if len(named) != len(ps) {
		t.Errorf("PoolsNamed gives %d pools, Pools %d", len(named), len(ps))
	}
	leases, err := db.Leases(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leases {
		lo := int64(l.TAC)*1000000 + int64(l.SNRStart)
		hi := int64(l.TAC)*1000000 + int64(l.SNREnd) - l.Released
		var rows []struct {
			State string `db:"state"`
			N     int64  `db:"n"`
		}
		if err := storetest.Reader(db).Select(&rows, storetest.Reader(db).Rebind(`SELECT state, COUNT(*) AS n FROM imeis
			WHERE imei14 BETWEEN ? AND ? GROUP BY state`), lo, hi); err != nil {
			t.Fatal(err)
		}
		c := map[string]int64{}
		var total int64
		for _, r := range rows {
			c[r.State], total = r.N, total+r.N
		}
		got := [4]int64{l.Bound, l.Voided, l.Revoked, l.Unused}
		want := [4]int64{c["BOUND"], c["VOIDED"], c["REVOKED"], hi - lo + 1 - total}
		if got != want || c["RESERVED"] != 0 {
			t.Errorf("lease %d: Leases counts bound, voided, revoked, unused %v; its rows hold %v (reserved %d)", l.ID, got, want, c["RESERVED"])
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return out
}

// TestPoolCountsExact: the usage counts Pools and Leases derive
// (counts.go: the high-water mark, the leases, the RESERVED, VOIDED and
// REVOKED rows) equal a full count of the rows by state at every step of a ledger with
// IMEIs reserved, pre-allocated, bound, voided, revoked, leased to sites
// (held and partly reported, released with SNRs handed back, re-leased,
// returned by force).
func TestPoolCountsExact(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 199)
		if _, err := db.CreatePool(ctx, store.Pool{Name: "B", TAC: testTAC, SNRStart: 500, SNREnd: 599, Market: "DE"}, "test"); err != nil {
			t.Fatal(err)
		}
		wantPoolCounts(t, db)
		in := func(fn func(tx *store.Tx) error) {
			t.Helper()
			if err := db.InTx(ctx, fn); err != nil {
				t.Fatal(err)
			}
		}
		res := map[string]*store.Reservation{}
		for _, id := range []string{"bound", "reserved", "voided", "revoked", "voided-bound"} {
			r, err := reserve(db, id, "A", 2)
			if err != nil {
				t.Fatal(err)
			}
			res[id] = r
		}
		if _, err := db.Reserve(ctx, store.ReserveRequest{RequestID: "pre", RequestHash: []byte("pre"), Pool: "B", Caller: "op",
			Kind: store.KindPreallocate, Devices: 3, PerDevice: 2}); err != nil {
			t.Fatal(err)
		}
		wantPoolCounts(t, db)
		for _, id := range []string{"bound", "revoked", "voided-bound"} {
			in(func(tx *store.Tx) error { return tx.Bind(res[id].Devices[0], "dev-"+id, "c0"+id, "S1", "b-"+id) })
		}
		in(func(tx *store.Tx) error { return tx.Void(res["voided"].Devices[0], lifecycle.VoidTest, "", "op", "") })
		in(func(tx *store.Tx) error {
			return tx.Void(res["voided-bound"].Devices[0], lifecycle.VoidScrapped, "", "op", "")
		})
		in(func(tx *store.Tx) error {
			return tx.Revoke(res["revoked"].Devices[0], lifecycle.RevokeStolen, "op", "")
		})
		got := wantPoolCounts(t, db)
		if a := got["A"]; a.Reserved != 2 || a.Bound != 2 || a.Voided != 4 || a.Revoked != 2 || got["B"].Reserved != 6 {
			t.Fatalf("pools %+v", got)
		}

		// Leases: l1 partly reported, then released with SNRs handed back.
		enrollSite(t, db, "s1")
		enrollSite(t, db, "s2")
		l1 := grant(t, db, "s1", 10)
		wantPoolCounts(t, db)
		cp := store.SiteCheckpoint{Size: 2, Hash: []byte("h2")}
		if _, err := db.ApplySiteEvents(ctx, "s1", []store.SiteEvent{
			bound(1, "d1", leaseIMEI(t, l1, 0), leaseIMEI(t, l1, 1)),
			{Seq: 2, LeafIndex: 2, Type: store.EventIMEIVoided, Time: time.Now(), IMEIs: []imei.IMEI{leaseIMEI(t, l1, 2)}, Reason: "abandoned"},
		}, cp, "hq"); err != nil {
			t.Fatal(err)
		}
		wantPoolCounts(t, db)
		cp = store.SiteCheckpoint{Size: 3, Hash: []byte("h3")}
		if _, err := db.ApplySiteEvents(ctx, "s1", []store.SiteEvent{released(3, l1.ID, int64(l1.SNRStart)+5)}, cp, "hq"); err != nil {
			t.Fatal(err)
		}
		wantPoolCounts(t, db)
		// The device HQ recorded from the released lease is revoked.
		if _, err := db.ApplySiteEvents(ctx, "s1", []store.SiteEvent{{Seq: 4, LeafIndex: 4, Type: store.EventIMEIRevoked, Time: time.Now(),
			IMEIs: []imei.IMEI{leaseIMEI(t, l1, 0), leaseIMEI(t, l1, 1)}, DeviceSerial: "d1", Reason: "compromised"}},
			store.SiteCheckpoint{Size: 4, Hash: []byte("h4")}, "hq"); err != nil {
			t.Fatal(err)
		}
		if st := leaseOf(t, db, l1.ID); st.Revoked != 2 || st.Voided != 3 || st.Bound != 0 {
			t.Fatalf("released lease after a revocation %+v", st)
		}
		wantPoolCounts(t, db)
		// s2 re-leases part of the handed-back SNRs and reports one (the
		// rest stay handed back); a lease from the high-water mark stays
		// held unreported; another is returned by force (its unreported
		// SNRs voided).
		l2 := grant(t, db, "s2", 2)
		if l2.ReletOf != l1.ID {
			t.Fatalf("lease %+v, want SNRs re-leased from lease %d", l2, l1.ID)
		}
		if _, err := db.ApplySiteEvents(ctx, "s2", []store.SiteEvent{bound(1, "e1", leaseIMEI(t, l2, 0))},
			store.SiteCheckpoint{Size: 1, Hash: []byte("g1")}, "hq"); err != nil {
			t.Fatal(err)
		}
		grant(t, db, "s1", 7)
		l4 := grant(t, db, "s1", 6)
		wantPoolCounts(t, db)
		if _, err := db.ReturnLease(ctx, l4.ID, "test"); err != nil {
			t.Fatal(err)
		}
		if _, err := reserve(db, "after-leases", "A", 2); err != nil {
			t.Fatal(err)
		}
		got = wantPoolCounts(t, db)
		rep := mustCheck(t, db)
		var rows int64
		for _, p := range got {
			rows += p.Reserved + p.Bound + p.Voided + p.Revoked
		}
		if rows != rep.IMEIs || rep.LeasedUnused == 0 || rep.ReleasedUnleased == 0 {
			t.Fatalf("pools count %d rows, ledger check %+v (want held and handed-back SNRs in the ledger)", rows, rep)
		}
	})
}

// TestReadTxIsOneSnapshot: the read transaction of Check and Pools sees
// one snapshot on both databases: a pool committed between two of its
// statements is not seen by the second (on PostgreSQL READ COMMITTED,
// the default, would see it, and Check could compare a high-water mark
// with rows written after it).
func TestReadTxIsOneSnapshot(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 99)
		first, second, err := db.CountPoolsTwice(ctx, func() {
			if _, err := db.CreatePool(ctx, store.Pool{Name: "B", TAC: testTAC, SNRStart: 500, SNREnd: 599}, "test"); err != nil {
				t.Error(err)
			}
		})
		if err != nil || first != 1 || second != 1 {
			t.Fatalf("pools counted %d then %d in one read transaction (%v), want 1 twice", first, second, err)
		}
		if ps, err := db.Pools(ctx); err != nil || len(ps) != 2 {
			t.Fatalf("pools after it: %d, %v", len(ps), err)
		}
	})
}
