// Package allocbench measures the allocation ledger: how many durable
// reservations per second concurrent callers get, against the simplest
// durable write the same database can do (one single-row insert per
// transaction) measured by the same workers in the same run. The ratio of the
// two is what to compare across machines; the absolute figures depend on the
// disk's fsync latency.
package allocbench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tacline/tacline/catalog"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/pgadmin"
	"github.com/tacline/tacline/tacerr"
)

// Options configure a run.
type Options struct {
	Driver    store.Dialect
	DSN       string // empty: a throwaway database (SQLite temp file, or PostgreSQL via AdminDSN)
	AdminDSN  string // PostgreSQL server for the throwaway database
	Workers   int
	Duration  time.Duration // per phase (baseline, then allocation)
	PerDevice int           // IMEIs per reservation (default 1)
}

// Result is printed as JSON by `tacline bench allocate`.
type Result struct {
	DB                       string  `json:"db"`
	Workers                  int     `json:"workers"`
	Reservations             int64   `json:"reservations"`
	IMEIs                    int64   `json:"imeis"`
	Duplicates               int64   `json:"duplicates"`
	PerSecond                float64 `json:"per_second"`
	P50ms                    float64 `json:"p50_ms"`
	P99ms                    float64 `json:"p99_ms"`
	BaselineCommitsPerSecond float64 `json:"baseline_commits_per_second"`
	Ratio                    float64 `json:"ratio"`
	LedgerOK                 bool    `json:"ledger_ok"`
	MeanBatch                float64 `json:"mean_batch"` // reservations per group-commit transaction
	DurationSeconds          float64 `json:"duration_seconds"`
}

// pools and TACs the run allocates from: each pool holds a whole TAC.
const benchPools = 8

// Run performs the benchmark. The database must be empty (or absent).
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Workers < 1 {
		return Result{}, tacerr.Field(tacerr.InvalidInput, "workers", "must be at least 1")
	}
	if o.Duration <= 0 {
		return Result{}, tacerr.Field(tacerr.InvalidInput, "duration", "must be positive")
	}
	if o.PerDevice == 0 {
		o.PerDevice = 1
	}
	cfg := store.Config{Driver: o.Driver, DSN: o.DSN, MaxConns: o.Workers}
	if cfg.DSN == "" {
		switch o.Driver {
		case store.SQLite:
			dir, err := os.MkdirTemp("", "tacline-bench-")
			if err != nil {
				return Result{}, err
			}
			defer os.RemoveAll(dir)
			cfg.DSN = filepath.Join(dir, "ledger.db")
		case store.Postgres:
			dsn, drop, err := pgadmin.CreateDatabase(ctx, o.AdminDSN)
			if err != nil {
				return Result{}, tacerr.Wrap(tacerr.Unavailable, err, "create a throwaway PostgreSQL database")
			}
			defer drop()
			cfg.DSN = dsn
		}
	}
	db, err := store.Open(ctx, cfg)
	if err != nil {
		return Result{}, err
	}
	defer db.Close()
	if err := seed(ctx, db); err != nil {
		return Result{}, err
	}
	res := Result{DB: string(o.Driver), Workers: o.Workers}
	if res.BaselineCommitsPerSecond, err = baseline(ctx, db, o); err != nil {
		return res, err
	}
	b0, r0 := db.BatchStats()
	if err := allocate(ctx, db, o, &res); err != nil {
		return res, err
	}
	if b1, r1 := db.BatchStats(); b1 > b0 {
		res.MeanBatch = float64(r1-r0) / float64(b1-b0)
	}
	if res.BaselineCommitsPerSecond > 0 {
		res.Ratio = res.PerSecond / res.BaselineCommitsPerSecond
	}
	rep, err := db.Check(ctx)
	if err != nil {
		return res, err
	}
	res.LedgerOK = rep.OK() && rep.IMEIs == res.IMEIs
	return res, nil
}

func seed(ctx context.Context, db *store.DB) error {
	var tacs []catalog.TAC
	for i := 0; i < benchPools; i++ {
		tacs = append(tacs, catalog.TAC{TAC: uint32(900000 + i), Brand: "Bench", ModelName: "B-1", DeviceType: "Module",
			RadioInterfaces: []string{"LTE"}, IMEIsPerDevice: 1, AllocationDate: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	}
	if err := db.AddTACs(ctx, tacs, "bench"); err != nil {
		return err
	}
	for i, t := range tacs {
		if _, err := db.CreatePool(ctx, store.Pool{Name: fmt.Sprintf("bench-%d", i), TAC: t.TAC, SNRStart: 0, SNREnd: 999999}, "bench"); err != nil {
			return err
		}
	}
	return db.CreateScratch(ctx)
}

// baseline: each worker commits one single-row insert per transaction.
func baseline(ctx context.Context, db *store.DB, o Options) (float64, error) {
	var n atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(o.Duration)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < o.Workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for seq := 0; time.Now().Before(deadline) && ctx.Err() == nil; seq++ {
				err := db.InTx(ctx, func(tx *store.Tx) error {
					return tx.WriteScratch(int64(w), int64(seq), strconv.FormatInt(time.Now().UnixMicro(), 10))
				})
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				n.Add(1)
			}
		}(w)
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return 0, fmt.Errorf("baseline insert: %w", err)
	}
	return float64(n.Load()) / time.Since(start).Seconds(), nil
}

func allocate(ctx context.Context, db *store.DB, o Options, res *Result) error {
	deadline := time.Now().Add(o.Duration)
	lat := make([][]time.Duration, o.Workers)
	got := make([][]imei.IMEI, o.Workers)
	var firstErr atomic.Value
	var pool atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < o.Workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline) && ctx.Err() == nil; i++ {
				p := pool.Load()
				if p >= benchPools {
					firstErr.CompareAndSwap(nil, fmt.Errorf("every bench pool is exhausted: shorten --duration"))
					return
				}
				t0 := time.Now()
				r, err := db.Reserve(ctx, store.ReserveRequest{RequestID: fmt.Sprintf("b-%d-%d", w, i), Pool: fmt.Sprintf("bench-%d", p),
					Caller: "bench", Kind: store.KindBench, PerDevice: o.PerDevice})
				if tacerr.Is(err, tacerr.PoolExhausted) {
					pool.CompareAndSwap(p, p+1)
					i--
					continue
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
				got[w] = append(got[w], r.Devices[0]...)
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err, ok := firstErr.Load().(error); ok {
		return fmt.Errorf("reserve: %w", err)
	}
	var all []time.Duration
	seen := make(map[imei.IMEI]struct{})
	for w := range lat {
		all = append(all, lat[w]...)
		for _, m := range got[w] {
			if _, dup := seen[m]; dup {
				res.Duplicates++
			}
			seen[m] = struct{}{}
			res.IMEIs++
		}
	}
	res.Reservations = int64(len(all))
	res.DurationSeconds = elapsed.Seconds()
	res.PerSecond = float64(len(all)) / elapsed.Seconds()
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	if len(all) > 0 {
		res.P50ms = ms(all[len(all)/2])
		res.P99ms = ms(all[len(all)*99/100])
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
