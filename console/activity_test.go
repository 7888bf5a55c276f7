package console

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/catalog"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// TestActivityIncremental: the overview's activity, read incrementally
// (each refresh reads from its previous read less store.ActivitySlack and
// keeps the older buckets), equals a full read of the window at every
// refresh while the window moves and reservations arrive, and a refresh
// reads only recent reservations.
func TestActivityIncremental(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if err := db.AddTACs(ctx, []catalog.TAC{{TAC: 100010, Brand: "Example Devices", ModelName: "EX-1", DeviceType: "Smartphone",
			RadioInterfaces: []string{"LTE"}, IMEIsPerDevice: 2, AllocationDate: time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)}}, "test"); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"A", "B"} {
			start := uint32(0)
			if p == "B" {
				start = 500000
			}
			if _, err := db.CreatePool(ctx, store.Pool{Name: p, TAC: 100010, SNRStart: start, SNREnd: start + 99999}, "test"); err != nil {
				t.Fatal(err)
			}
		}
		now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		db.SetClock(func() time.Time { return now })
		c := &Console{cfg: Config{DB: db}}
		n := 0
		reserve := func(pool, caller string) {
			t.Helper()
			n++
			id := fmt.Sprint("r", n)
			if _, err := db.Reserve(ctx, store.ReserveRequest{RequestID: id, RequestHash: []byte(id), Pool: pool, Caller: caller,
				Kind: store.KindProvision, DeviceSerial: "dev-" + id, PerDevice: 2}); err != nil {
				t.Fatal(err)
			}
		}
		text := func(as []store.Activity) string {
			var s []string
			for _, a := range as {
				s = append(s, fmt.Sprint(a))
			}
			slices.Sort(s)
			return strings.Join(s, "\n")
		}
		for step := range 20 {
			// Reservations every 7 minutes, some steps with two callers.
			reserve("A", "S1")
			if step%3 == 0 {
				reserve("B", "S2")
			}
			now = now.Add(7 * time.Minute)
			since := now.Add(-window).Truncate(bucket).Add(bucket)
			got, err := c.activity(ctx, since)
			if err != nil {
				t.Fatal(err)
			}
			want, err := db.RecentActivity(ctx, since, bucket)
			if err != nil {
				t.Fatal(err)
			}
			if len(want) == 0 || text(got) != text(want) {
				t.Fatalf("step %d: incremental activity\n%s\nfull read\n%s", step, text(got), text(want))
			}
		}
		// What a refresh reads: the buckets from its previous read less
		// the slack, not the hour.
		from := c.act.readAt.Add(-store.ActivitySlack).Truncate(bucket)
		if since := now.Add(-window).Truncate(bucket).Add(bucket); !from.After(since) {
			t.Fatalf("the next refresh would read from %s, the window's start %s", from, since)
		}
	})
}
