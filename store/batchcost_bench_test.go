package store_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/tacline/tacline/internal/proccpu"
	"github.com/tacline/tacline/register"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// BenchmarkPostgresBatchCPU measures what a PostgreSQL group-commit batch
// costs: each iteration is one batch of n reservations and the n bindings
// of the previous batch's reservations, with the audit log and the
// register outbox attached (TestPostgresBatchStatements' batch, at n
// devices). It reports the backend's CPU per batch (/proc/PID/stat of the
// ledger's one connection: PostgreSQL must run on this machine), this
// process's (the store's side, the benchmark's own loop included) and the
// statements per batch. A line through the sizes splits a batch's cost
// into a part per batch and a part per device (docs/benchmarks.md,
// "Session 18").
//
//	go test -run '^$' -bench PostgresBatchCPU -benchtime 1000x ./store/
func BenchmarkPostgresBatchCPU(b *testing.B) {
	for _, n := range []int{2, 5, 16} {
		b.Run(fmt.Sprintf("devices=%d", n), func(b *testing.B) {
			cfg := store.Config{Driver: store.Postgres, DSN: storetest.PostgresDSN(b), MaxConns: 1}
			db := openAuditReplica(b, cfg, "b").db
			db.AddSink(register.Outbox{})
			seed(b, db, 0, 999_999)
			var pid int
			if err := db.InTx(context.Background(), func(tx *store.Tx) error {
				return storetest.Get(tx, &pid, `SELECT pg_backend_pid()`)
			}); err != nil {
				b.Fatal(err)
			}
			if _, err := proccpu.Of(pid); err != nil {
				b.Skipf("PostgreSQL's backend is not a process of this machine: %v", err)
			}
			seq := 0
			var binds []*store.Binding
			batch := func() {
				reqs := make([]store.ReserveRequest, n)
				for i := range reqs {
					seq++
					reqs[i] = provisionRequest(fmt.Sprintf("b%d", seq))
				}
				res, errs := db.RunBatch(reqs, binds)
				for i, err := range errs {
					if err != nil {
						b.Fatalf("member %d: %v", i, err)
					}
				}
				binds = binds[:0]
				for i := range reqs {
					binds = append(binds, bindingOf(res[i], reqs[i]))
				}
			}
			for range 20 { // every statement prepared, the audit head guessed
				batch()
			}
			back0, self0, st0 := backendCPU(b, pid), selfCPU(), db.Statements()
			b.ResetTimer()
			for range b.N {
				batch()
			}
			b.StopTimer()
			per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N) }
			b.ReportMetric(per(backendCPU(b, pid)-back0), "backend-us/batch")
			b.ReportMetric(per(selfCPU()-self0), "client-us/batch")
			b.ReportMetric(float64(db.Statements()-st0)/float64(b.N), "statements/batch")
		})
	}
}

func backendCPU(b *testing.B, pid int) time.Duration {
	d, err := proccpu.Of(pid)
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
