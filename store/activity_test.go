package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

func TestRecentActivity(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		seed(t, db, 0, 999)
		t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		ctx := context.Background()
		for i, ago := range []time.Duration{3 * time.Hour, 2 * time.Hour, 30 * time.Minute, 10 * time.Minute, 9 * time.Minute} {
			at := t0.Add(-ago)
			db.SetClock(func() time.Time { return at })
			if _, err := reserve(db, fmt.Sprint("a", i), "A", 2); err != nil {
				t.Fatal(err)
			}
		}
		got, err := db.RecentActivity(ctx, t0.Add(-time.Hour), 10*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		// 30 min ago is bucket 3 (one device, 2 IMEIs); 10 and 9 min ago
		// are bucket 5 (two devices, 4 IMEIs); the older ones are out.
		want := "[{S1 A 3 1 2 2026-03-01 11:30:00 +0000 UTC} {S1 A 5 2 4 2026-03-01 11:51:00 +0000 UTC}]"
		if fmt.Sprint(got) != want {
			t.Fatalf("activity = %v\nwant       %s", got, want)
		}
		last, err := db.LastReservations(ctx, time.Time{}, nil)
		if err != nil || len(last) != 1 || !last["S1"].Equal(t0.Add(-9*time.Minute)) {
			t.Fatalf("last reservations = %v, %v; want S1 at %s", last, err, t0.Add(-9*time.Minute))
		}
		none, err := db.RecentActivity(ctx, t0, time.Minute)
		if err != nil || len(none) != 0 {
			t.Fatalf("activity after the last reservation = %v, %v; want none", none, err)
		}
		// Read again from a time: only the reservations since then (give
		// or take ActivitySlack) are read, added into the kept map.
		later := t0.Add(time.Hour)
		db.SetClock(func() time.Time { return later })
		if _, err := db.Reserve(ctx, store.ReserveRequest{RequestID: "s2", RequestHash: []byte("s2"), Pool: "A", Caller: "S2",
			Kind: store.KindProvision, DeviceSerial: "dev-s2", PerDevice: 2}); err != nil {
			t.Fatal(err)
		}
		since := later.Add(-time.Minute)
		if only, err := db.LastReservations(ctx, since, nil); err != nil || len(only) != 1 || !only["S2"].Equal(later) {
			t.Fatalf("last reservations since %s = %v, %v; want S2 alone at %s", since, only, err, later)
		}
		last, err = db.LastReservations(ctx, since, last)
		if err != nil || len(last) != 2 || !last["S1"].Equal(t0.Add(-9*time.Minute)) || !last["S2"].Equal(later) {
			t.Fatalf("last reservations kept and read since %s = %v, %v", since, last, err)
		}
	})
}

// TestConsoleCache: a saved console cache reads back with its read time;
// a save of an older read leaves the newer one (replicas share the row),
// and a name never saved reads as none.
func TestConsoleCache(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if at, state, err := db.ConsoleCache(ctx, "activity"); err != nil || !at.IsZero() || state != nil {
			t.Fatalf("unsaved cache = %s %q %v; want none", at, state, err)
		}
		t0 := time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)
		for _, s := range []struct {
			at    time.Time
			state string
		}{{t0, "first"}, {t0.Add(time.Minute), "newer"}, {t0.Add(30 * time.Second), "older"}, {t0.Add(time.Minute), "same time"}} {
			if err := db.SaveConsoleCache(ctx, "activity", s.at, []byte(s.state)); err != nil {
				t.Fatal(err)
			}
		}
		at, state, err := db.ConsoleCache(ctx, "activity")
		if err != nil || !at.Equal(t0.Add(time.Minute)) || string(state) != "newer" {
			t.Fatalf("cache = %s %q %v; want the newer read at %s", at, state, err, t0.Add(time.Minute))
		}
		if at, _, err := db.ConsoleCache(ctx, "last_seen"); err != nil || !at.IsZero() {
			t.Fatalf("another name = %s %v; want none", at, err)
		}
		if err := db.SaveConsoleCache(ctx, "", t0, nil); err == nil {
			t.Fatal("saved a cache without a name")
		}
	})
}
