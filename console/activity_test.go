package console

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/catalog"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// TestActivityIncremental: the overview's activity, read incrementally
// (each refresh reads the reservations committed after its previous read's
// cursor and adds them into the kept buckets), equals a full read of the
// window at every refresh while the window moves and reservations arrive,
// and only the first refresh reads the window; so does the first refresh
// of a console started anew on the same ledger (a restart, another
// replica): it goes on from the buckets and the cursor the previous one
// saved, not from the window's start.
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
			// Reservations every 2, 5 or 8 minutes (some refreshes add into
			// a bucket an earlier one read), some steps with two callers.
			reserve("A", "S1")
			if step%3 == 0 {
				reserve("B", "S2")
			}
			now = now.Add(time.Duration(2+step%3*3) * time.Minute)
			restart := step == 9 || step == 15
			if restart {
				c = &Console{cfg: Config{DB: db, Log: slog.New(slog.DiscardHandler)}}
			}
			since := now.Add(-window).Truncate(bucket).Add(bucket)
			got, err := c.activity(ctx, since)
			if err != nil {
				t.Fatal(err)
			}
			if c.act.cold != (step == 0) {
				t.Fatalf("step %d (restart %v): the refresh read the whole window: %v", step, restart, c.act.cold)
			}
			want, _, err := db.RecentActivity(ctx, store.ActivityCursor{}, since, bucket)
			if err != nil {
				t.Fatal(err)
			}
			if len(want) == 0 || text(got) != text(want) {
				t.Fatalf("step %d: incremental activity\n%s\nfull read\n%s", step, text(got), text(want))
			}
		}
		// A console whose saved read is older than the window reads the
		// window, not everything since.
		now = now.Add(window + store.ActivitySlack)
		reserve("A", "S1")
		c = &Console{cfg: Config{DB: db, Log: slog.New(slog.DiscardHandler)}}
		since := now.Add(-window).Truncate(bucket).Add(bucket)
		got, err := c.activity(ctx, since)
		if err != nil {
			t.Fatal(err)
		}
		if !c.act.cold || len(got) != 1 || got[0].Reservations != 1 {
			t.Fatalf("after a stale saved read: cold %v, activity %v; want the one new reservation, read cold", c.act.cold, got)
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
		now, reserve := poolA(t, db)
		check := func(what string, c *Console) {
			t.Helper()
			got, err := c.lastSeen(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := lastSeenInFull(t, db)
			if len(want) == 0 || !maps.EqualFunc(got, want, time.Time.Equal) {
				t.Fatalf("%s: last seen %v, full read %v", what, got, want)
			}
		}
		newConsole := func() *Console { return &Console{cfg: Config{DB: db, Log: slog.New(slog.DiscardHandler)}} }
		// S0 reserved a day before the others (a station idle since).
		reserve("S0")
		*now = now.Add(24 * time.Hour)
		reserve("S1")
		reserve("S2")
		*now = now.Add(time.Minute)
		c := newConsole()
		check("first read", c)
		if !c.seen.from.IsZero() {
			t.Fatalf("the first read on a new ledger started at %+v, not from the zero cursor", c.seen.from)
		}
		for step := range 3 {
			*now = now.Add(2 * lastSeenTTL)
			reserve("S1")
			if step == 1 {
				reserve("S3")
			}
			check(fmt.Sprint("refresh ", step), c)
		}
		saved := c.seen.cur
		*now = now.Add(2 * lastSeenTTL)
		reserve("S2")
		*now = now.Add(2 * lastSeenTTL)
		c = newConsole()
		check("first read after a start", c)
		if saved.IsZero() || !reflect.DeepEqual(c.seen.from, saved) {
			t.Fatalf("the first read after a start started at %+v, want the saved read's %+v", c.seen.from, saved)
		}
	})
}

// poolA makes pool A on db and sets db's clock to *now (from 2026-03-01
// 12:00 UTC; the caller moves it); reserve reserves one device of two
// IMEIs from A for caller.
func poolA(t *testing.T, db *store.DB) (now *time.Time, reserve func(caller string)) {
	t.Helper()
	ctx := context.Background()
	addTAC(t, db)
	if _, err := db.CreatePool(ctx, store.Pool{Name: "A", TAC: 100010, SNRStart: 0, SNREnd: 99999}, "test"); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	db.SetClock(func() time.Time { return at })
	n := 0
	return &at, func(caller string) {
		t.Helper()
		n++
		id := fmt.Sprint("r", n)
		if _, err := db.Reserve(ctx, store.ReserveRequest{RequestID: id, RequestHash: []byte(id), Pool: "A", Caller: caller,
			Kind: store.KindProvision, DeviceSerial: "dev-" + id, PerDevice: 2}); err != nil {
			t.Fatal(err)
		}
	}
}

// lastSeenInFull is every caller's last reservation, read from the zero
// cursor (every reservation).
func lastSeenInFull(t *testing.T, db *store.DB) map[string]time.Time {
	t.Helper()
	last, _, err := db.LastReservations(context.Background(), store.ActivityCursor{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return last
}

// addTAC records the TAC the pools of these tests draw from.
func addTAC(t testing.TB, db *store.DB) {
	t.Helper()
	if err := db.AddTACs(context.Background(), []catalog.TAC{{TAC: 100010, Brand: "Example Devices", ModelName: "EX-1", DeviceType: "Smartphone",
		RadioInterfaces: []string{"LTE"}, IMEIsPerDevice: 2, AllocationDate: time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)}}, "test"); err != nil {
		t.Fatal(err)
	}
}

// TestLastSeenFromLegacyCache: the stations' last reservations a console
// saved before cursors existed (name "last_seen": the map alone, with the
// time of its read) are read once after the upgrade and carried on from a
// cursor at that time, not replaced by a scan of every reservation: a
// station only the saved map knows is kept, and later reservations are
// added.
func TestLastSeenFromLegacyCache(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		now, reserve := poolA(t, db)
		reserve("S1")
		*now = now.Add(time.Hour)
		reserve("S2")
		// The old console's save: S9 is a station only the saved map knows
		// (no scan of the reservations would find it).
		s9 := now.Add(-30 * 24 * time.Hour)
		legacy := map[string]int64{"S1": now.Add(-time.Hour).UnixMicro(), "S2": now.UnixMicro(), "S9": s9.UnixMicro()}
		b, err := json.Marshal(legacy)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.SaveConsoleCache(ctx, cacheLastSeenV1, *now, b); err != nil {
			t.Fatal(err)
		}
		*now = now.Add(10 * time.Minute)
		reserve("S1")
		reserve("S3")
		*now = now.Add(time.Minute)
		c := &Console{cfg: Config{DB: db, Log: slog.New(slog.DiscardHandler)}}
		got, err := c.lastSeen(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := lastSeenInFull(t, db)
		want["S9"] = s9
		if !maps.EqualFunc(got, want, time.Time.Equal) {
			t.Fatalf("last seen after the upgrade %v, want %v", got, want)
		}
		if c.seen.from.IsZero() {
			t.Fatal("the first read after the upgrade scanned every reservation")
		}
	})
}
