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
		got, _, err := db.RecentActivity(ctx, store.ActivityCursor{}, t0.Add(-time.Hour), 10*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		// 30 min ago is bucket 3 (one device, 2 IMEIs); 10 and 9 min ago
		// are bucket 5 (two devices, 4 IMEIs); the older ones are out.
		want := "[{S1 A 3 1 2 2026-03-01 11:30:00 +0000 UTC} {S1 A 5 2 4 2026-03-01 11:51:00 +0000 UTC}]"
		if fmt.Sprint(got) != want {
			t.Fatalf("activity = %v\nwant       %s", got, want)
		}
		last, cur, err := db.LastReservations(ctx, store.ActivityCursor{}, nil)
		if err != nil || len(last) != 1 || !last["S1"].Equal(t0.Add(-9*time.Minute)) {
			t.Fatalf("last reservations = %v, %v; want S1 at %s", last, err, t0.Add(-9*time.Minute))
		}
		none, _, err := db.RecentActivity(ctx, store.ActivityCursor{}, t0, time.Minute)
		if err != nil || len(none) != 0 {
			t.Fatalf("activity after the last reservation = %v, %v; want none", none, err)
		}
		// Read again from the cursor: only the reservations since are
		// read, added into the kept map.
		later := t0.Add(time.Hour)
		db.SetClock(func() time.Time { return later })
		if _, err := db.Reserve(ctx, store.ReserveRequest{RequestID: "s2", RequestHash: []byte("s2"), Pool: "A", Caller: "S2",
			Kind: store.KindProvision, DeviceSerial: "dev-s2", PerDevice: 2}); err != nil {
			t.Fatal(err)
		}
		if only, _, err := db.LastReservations(ctx, cur, nil); err != nil || len(only) != 1 || !only["S2"].Equal(later) {
			t.Fatalf("last reservations after %+v = %v, %v; want S2 alone at %s", cur, only, err, later)
		}
		last, _, err = db.LastReservations(ctx, cur, last)
		if err != nil || len(last) != 2 || !last["S1"].Equal(t0.Add(-9*time.Minute)) || !last["S2"].Equal(later) {
			t.Fatalf("last reservations kept and read after %+v = %v, %v", cur, last, err)
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

// TestActivityCursor: a read from a cursor counts exactly the reservations
// committed since the read that returned it: the new ones, and an id at or
// below the cursor's mark that was missing then once it commits (on
// PostgreSQL a batch takes its ids before it commits, so a later id can
// commit first: a real transaction holds one open here); an id missing for
// longer than ActivitySlack is given up; a read with nothing new counts
// nothing. The reads add up to a full read of the window.
func TestActivityCursor(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		seed(t, db, 0, 999)
		ctx := context.Background()
		now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		db.SetClock(func() time.Time { return now })
		since := now.Add(-time.Hour)
		counted := int64(0)
		read := func(what string, cur store.ActivityCursor, want int64) store.ActivityCursor {
			t.Helper()
			acts, next, err := db.RecentActivity(ctx, cur, since, 10*time.Minute)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			n := int64(0)
			for _, a := range acts {
				n += a.Reservations
			}
			if n != want {
				t.Fatalf("%s: counted %d reservations, want %d (cursor %+v -> %+v)", what, n, want, cur, next)
			}
			counted += n
			return next
		}
		pending := func(what string, cur store.ActivityCursor, want ...int64) {
			t.Helper()
			var got []int64
			for _, p := range cur.Pending {
				for id := p.From; id <= p.To; id++ {
					got = append(got, id)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("%s: pending ids %v, want %v", what, got, want)
			}
		}
		for i := range 3 {
			if _, err := reserve(db, fmt.Sprint("a", i), "A", 2); err != nil {
				t.Fatal(err)
			}
		}
		cur := read("first read", store.ActivityCursor{}, 3)
		pending("first read", cur)
		if again := read("nothing new", cur, 0); again.After != cur.After {
			t.Fatalf("a read with nothing new moved the cursor from %d to %d", cur.After, again.After)
		}
		for i := 3; i < 5; i++ {
			if _, err := reserve(db, fmt.Sprint("a", i), "A", 1); err != nil {
				t.Fatal(err)
			}
		}
		cur = read("two new", cur, 2)

		if db.Dialect() == store.Postgres {
			// A transaction takes an id; a later id commits first; then
			// the transaction inserts its reservation and commits (a held
			// insert would hold the pool row's key lock, which the batch's
			// FOR UPDATE waits for).
			held, err := storetest.Reader(db).BeginTxx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer held.Rollback()
			var id int64
			if err := held.Get(&id, `SELECT nextval(pg_get_serial_sequence('reservations', 'id'))`); err != nil {
				t.Fatal(err)
			}
			if _, err := reserve(db, "after-held", "A", 1); err != nil {
				t.Fatal(err)
			}
			cur = read("a later id committed first", cur, 1)
			pending("a later id committed first", cur, id)
			if _, err := held.Exec(`INSERT INTO reservations (id, request_id, request_hash, pool_id, caller, kind, device_serial, devices, per_device, created_at)
				SELECT $1, 'held', request_hash, pool_id, caller, kind, 'dev-held', 1, 1, $2 FROM reservations WHERE request_id = 'a0'`, id, now.UnixMicro()); err != nil {
				t.Fatal(err)
			}
			if err := held.Commit(); err != nil {
				t.Fatal(err)
			}
			cur = read("the held id committed", cur, 1)
			pending("the held id committed", cur)
		}

		// Ids written by hand from here on (no more Reserve: PostgreSQL's
		// sequence does not know them).
		insert := func(id int64, rid string) {
			t.Helper()
			if err := rawExec(db, fmt.Sprintf(`INSERT INTO reservations (id, request_id, request_hash, pool_id, caller, kind, device_serial, devices, per_device, created_at)
				SELECT %d, '%s', request_hash, pool_id, caller, kind, 'dev-%[2]s', 1, 1, %d FROM reservations WHERE request_id = 'a0'`, id, rid, now.UnixMicro())); err != nil {
				t.Fatal(err)
			}
		}
		gap := cur.After + 1
		insert(gap+1, "g1")
		insert(gap+3, "g3")
		cur = read("two ids missing", cur, 2)
		pending("two ids missing", cur, gap, gap+2)
		insert(gap+2, "g2")
		now = now.Add(time.Minute)
		cur = read("one of them committed", cur, 1)
		pending("one of them committed", cur, gap)
		now = now.Add(store.ActivitySlack)
		cur = read("the other given up", cur, 0)
		pending("the other given up", cur)
		if cur.After != gap+3 {
			t.Fatalf("cursor at %d, want %d", cur.After, gap+3)
		}

		full, _, err := db.RecentActivity(ctx, store.ActivityCursor{}, since, 10*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		n := int64(0)
		for _, a := range full {
			n += a.Reservations
		}
		if n != counted {
			t.Fatalf("the cursor's reads counted %d reservations, a full read %d", counted, n)
		}
	})
}
