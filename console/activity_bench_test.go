package console

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// BenchmarkActivityRefresh: one refresh of the overview's activity (the
// chart's buckets) while a line provisions at 500 devices/s: 10 minutes of
// reservations (300,000, 64 stations) before the first refresh, then 2,500
// more (5 s, the overview's refresh interval) before each timed refresh.
// The reservations are written by hand (no IMEIs: only the activity reads
// them). The first refresh of a console with nothing saved reads the whole
// window: BenchmarkActivityRefresh/DB/first times that one.
// docs/benchmarks.md, "Session 15 (lead)".
func BenchmarkActivityRefresh(b *testing.B) {
	for _, d := range storetest.Dialects {
		b.Run(string(d), func(b *testing.B) {
			db := storetest.Open(b, d)
			ctx := context.Background()
			addTAC(b, db)
			p, err := db.CreatePool(ctx, store.Pool{Name: "A", TAC: 100010, SNRStart: 0, SNREnd: 999999}, "test")
			if err != nil {
				b.Fatal(err)
			}
			const rate = 500
			now := time.Now().UTC().Add(-10 * time.Minute)
			db.SetClock(func() time.Time { return now })
			next := 0
			// add writes the next n reservations, one every 1/rate s from
			// now on, and moves the clock past them.
			add := func(n int) {
				hash := `x'00'`
				if d == store.Postgres {
					hash = `'\x00'::bytea`
				}
				q := fmt.Sprintf(`WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM n WHERE i < %d)
INSERT INTO reservations (request_id, request_hash, pool_id, caller, kind, device_serial, devices, per_device, created_at)
SELECT 'b' || (i + %d), %s, %d, 'S' || (i %% 64), 'provision', 'dev-b' || (i + %d), 1, 2, %d + i * %d FROM n`,
					n-1, next, hash, p.ID, next, now.UnixMicro(), int64(time.Second/time.Microsecond)/rate)
				if err := db.InTx(ctx, func(tx *store.Tx) error {
					_, err := storetest.Exec(tx, q)
					return err
				}); err != nil {
					b.Fatal(err)
				}
				next += n
				now = now.Add(time.Duration(n) * time.Second / rate)
			}
			for range 10 * 60 {
				add(rate)
			}
			refresh := func(c *Console) {
				acts, err := c.activity(ctx, now.Add(-window).Truncate(bucket).Add(bucket))
				if err != nil || len(acts) == 0 {
					b.Fatal(acts, err)
				}
			}
			b.Run("first", func(b *testing.B) {
				for b.Loop() {
					b.StopTimer()
					if err := db.InTx(ctx, func(tx *store.Tx) error {
						_, err := storetest.Exec(tx, `DELETE FROM console_cache`)
						return err
					}); err != nil {
						b.Fatal(err)
					}
					c := &Console{cfg: Config{DB: db, Log: slog.New(slog.DiscardHandler)}}
					b.StartTimer()
					refresh(c)
				}
			})
			b.Run("next", func(b *testing.B) {
				c := &Console{cfg: Config{DB: db, Log: slog.New(slog.DiscardHandler)}}
				refresh(c)
				for b.Loop() {
					b.StopTimer()
					add(5 * rate)
					b.StartTimer()
					refresh(c)
				}
			})
		})
	}
}
