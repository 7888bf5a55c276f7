package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tacline/tacline/catalog"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// BenchmarkCheckLeases measures `ledger check` at headquarters with n
// leases of 100 SNRs: a quarter released by their site with proof (all
// handed back) and re-leased to another site, a quarter released, half
// held (docs/benchmarks.md, issue 15).
//
//	go test -run '^$' -bench CheckLeases -benchtime 20x ./store/
func BenchmarkCheckLeases(b *testing.B) {
	for _, d := range storetest.Dialects {
		for _, n := range []int{0, 400, 2000} {
			b.Run(fmt.Sprintf("%s/leases=%d", d, n), func(b *testing.B) {
				ctx := context.Background()
				db := storetest.Open(b, d)
				if err := db.AddTACs(ctx, []catalog.TAC{testTACRecord(testTAC, 2)}, "bench"); err != nil {
					b.Fatal(err)
				}
				if _, err := db.CreatePool(ctx, store.Pool{Name: "A", TAC: testTAC, SNRStart: 0, SNREnd: 999999, Product: "EX-1", Market: "DE"}, "bench"); err != nil {
					b.Fatal(err)
				}
				for _, s := range []string{"s1", "s2"} {
					if err := db.EnrollSite(ctx, store.Site{Name: s, Verifier: s + "+00000000+AAAA", Pools: []string{"A"}}, "bench"); err != nil {
						b.Fatal(err)
					}
				}
				var events []store.SiteEvent
				for i := range n {
					l, err := db.GrantLease(ctx, "s1", "A", 100, time.Hour, store.LeaseLimits{}, "bench")
					if err != nil {
						b.Fatal(err)
					}
					if i%2 == 0 {
						events = append(events, store.SiteEvent{Seq: int64(len(events) + 1), LeafIndex: int64(len(events) + 1), Type: store.EventLeaseReleased, Time: time.Now(),
							Lease: l.ID, UnusedFrom: int64(l.SNRStart)})
					}
				}
				if len(events) > 0 {
					if _, err := db.ApplySiteEvents(ctx, "s1", events, store.SiteCheckpoint{Size: 1, Hash: []byte("h")}, "bench"); err != nil {
						b.Fatal(err)
					}
				}
				for range n / 4 {
					if _, err := db.GrantLease(ctx, "s2", "A", 100, time.Hour, store.LeaseLimits{}, "bench"); err != nil {
						b.Fatal(err)
					}
				}
				rep := mustCheck(b, db)
				if rep.Leases != n+n/4 {
					b.Fatalf("check %+v", rep)
				}
				for b.Loop() {
					if _, err := db.Check(ctx); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
