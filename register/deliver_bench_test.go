package register_test

import (
	"context"
	"testing"

	"github.com/tacline/tacline/register"
	"github.com/tacline/tacline/register/registertest"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// BenchmarkDeliver measures outbox-to-register throughput: 2,000 bound
// IMEIs delivered to the in-process simulator (real HTTP, its own SQLite
// store) in batches of 100, per dialect.
func BenchmarkDeliver(b *testing.B) {
	const n = 2000
	for _, d := range storetest.Dialects {
		b.Run(string(d), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				db := storetest.Open(b, d)
				db.AddSink(register.Outbox{})
				rows := make([]registertest.Row, n)
				snrs := make([]uint32, n)
				for i := range rows {
					rows[i] = registertest.Row{SNR: uint32(i), State: "RESERVED"}
					snrs[i] = uint32(i)
				}
				registertest.Seed(b, db, tac, rows)
				registertest.Transition(b, db, tac, snrs, "BOUND", store.EventIMEIBound, "BENCH1")
				_, ts := simulator(b)
				cfg := config(ts.URL)
				cfg.BatchSize = 100
				w, err := register.NewWorker(db, cfg, nil, nil)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				total := 0
				for {
					k, err := w.DeliverOnce(context.Background())
					if err != nil {
						b.Fatal(err)
					}
					if k == 0 {
						break
					}
					total += k
				}
				if total != n {
					b.Fatalf("delivered %d of %d", total, n)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
