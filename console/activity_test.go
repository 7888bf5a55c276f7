package console

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
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
// reads only recent reservations; so does the first refresh of a console
// started anew on the same ledger (a restart, another replica): it goes on
// from the buckets the previous one saved, not from the window's start.
func TestActivityIncremental(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		addTAC(t, db)
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
		c := &Console{cfg: Config{DB: db, Log: slog.New(slog.DiscardHandler)}}
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
			restart := step == 9 || step == 15
			if restart {
				c = &Console{cfg: Config{DB: db, Log: slog.New(slog.DiscardHandler)}}
			}
			since := now.Add(-window).Truncate(bucket).Add(bucket)
			got, err := c.activity(ctx, since)
			if err != nil {
				t.Fatal(err)
			}
			if restart && !c.act.from.After(since) {
				t.Fatalf("step %d: the first refresh after a start read from %s, the window's start %s", step, c.act.from, since)
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

// TestLastSeenAfterRestart: the stations' last reservations a console
// reads equal a full read of the reservations, at its first read, after
// later reservations, and at the first read of a console started anew on
// the same ledger, which goes on from the map the previous one saved
// instead of reading every reservation.
func TestLastSeenAfterRestart(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		addTAC(t, db)
		if _, err := db.CreatePool(ctx, store.Pool{Name: "A", TAC: 100010, SNRStart: 0, SNREnd: 99999}, "test"); err != nil {
			t.Fatal(err)
		}
		now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		db.SetClock(func() time.Time { return now })
		n := 0
		reserve := func(caller string) {
			t.Helper()
			n++
			id := fmt.Sprint("r", n)
			if _, err := db.Reserve(ctx, store.ReserveRequest{RequestID: id, RequestHash: []byte(id), Pool: "A", Caller: caller,
				Kind: store.KindProvision, DeviceSerial: "dev-" + id, PerDevice: 2}); err != nil {
				t.Fatal(err)
			}
		}
		check := func(what string, c *Console) {
			t.Helper()
			got, err := c.lastSeen(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want, err := db.LastReservations(ctx, time.Time{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(want) == 0 || !maps.EqualFunc(got, want, time.Time.Equal) {
				t.Fatalf("%s: last seen %v, full read %v", what, got, want)
			}
		}
		newConsole := func() *Console { return &Console{cfg: Config{DB: db, Log: slog.New(slog.DiscardHandler)}} }
		// S0 reserved a day before the others (a station idle since).
		reserve("S0")
		now = now.Add(24 * time.Hour)
		reserve("S1")
		reserve("S2")
		now = now.Add(time.Minute)
		c := newConsole()
		check("first read", c)
		if !c.seen.from.IsZero() {
			t.Fatalf("the first read on a new ledger started at %s, not at the first reservation", c.seen.from)
		}
		for step := range 3 {
			now = now.Add(2 * lastSeenTTL)
			reserve("S1")
			if step == 1 {
				reserve("S3")
			}
			check(fmt.Sprint("refresh ", step), c)
		}
		saved := c.seen.at
		now = now.Add(2 * lastSeenTTL)
		reserve("S2")
		now = now.Add(2 * lastSeenTTL)
		c = newConsole()
		check("first read after a start", c)
		if !c.seen.from.Equal(saved) {
			t.Fatalf("the first read after a start started at %s, want the saved read's %s", c.seen.from, saved)
		}
	})
}

// addTAC records the TAC the pools of these tests draw from.
func addTAC(t *testing.T, db *store.DB) {
	t.Helper()
	if err := db.AddTACs(context.Background(), []catalog.TAC{{TAC: 100010, Brand: "Example Devices", ModelName: "EX-1", DeviceType: "Smartphone",
		RadioInterfaces: []string{"LTE"}, IMEIsPerDevice: 2, AllocationDate: time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)}}, "test"); err != nil {
		t.Fatal(err)
	}
}
