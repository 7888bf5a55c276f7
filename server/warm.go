package server

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tacline/tacline/store"
)

// warmState is what the ledger's warm-up (store.DB.Warm) has done, for
// /metrics: bytes read so far, what is kept mapped, how many walks have
// ended, and whether the first has ended (or there was nothing to do).
type warmState struct {
	bytes  atomic.Int64
	mapped atomic.Int64
	runs   atomic.Int64
	done   atomic.Bool
}

var (
	descWarmBytes = prometheus.NewDesc("tacline_ledger_warm_bytes", "Bytes of the SQLite ledger's key indexes read into the page cache since this server started (database.warm_mib).", nil, nil)
	descWarmDone  = prometheus.NewDesc("tacline_ledger_warm_done", "1 once the ledger's start-up warm-up has ended (at once on PostgreSQL or with database.warm_mib -1).", nil, nil)
	descWarmMap   = prometheus.NewDesc("tacline_ledger_warm_mapped_bytes", "Bytes of the SQLite ledger's file the server keeps mapped so that the pages of its key indexes stay resident (counted in the server's resident set).", nil, nil)
	descWarmRuns  = prometheus.NewDesc("tacline_ledger_warm_runs_total", "Walks of the SQLite ledger's key indexes that ended since this server started: the start-up's, then one every database.warm_refresh while pages are kept mapped.", nil, nil)
)

func (w *warmState) Describe(ch chan<- *prometheus.Desc) {
	ch <- descWarmBytes
	ch <- descWarmDone
	ch <- descWarmMap
	ch <- descWarmRuns
}

func (w *warmState) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descWarmBytes, prometheus.GaugeValue, float64(w.bytes.Load()))
	ch <- prometheus.MustNewConstMetric(descWarmDone, prometheus.GaugeValue, b2f(w.done.Load()))
	ch <- prometheus.MustNewConstMetric(descWarmMap, prometheus.GaugeValue, float64(w.mapped.Load()))
	ch <- prometheus.MustNewConstMetric(descWarmRuns, prometheus.CounterValue, float64(w.runs.Load()))
}

// warmLedger reads the ledger's key indexes into the page cache while the
// server serves (a device that comes first reads what it needs itself, as
// before), keeps their pages mapped (store.DB.Warm), logs what it did, and,
// when it keeps pages mapped, does it again every database.warm_refresh
// until ctx ends, so that the pages the indexes grew into are kept mapped
// too.
func (s *Server) warmLedger(ctx context.Context) {
	s.checkBufferFit(ctx)
	budget := s.cfg.Database.WarmBudget()
	if budget.Read <= 0 {
		s.warm.done.Store(true)
		return
	}
	s.warmOnce(ctx, budget, true)
	s.warm.done.Store(true)
	if budget.Map <= 0 {
		return // nothing kept mapped: nothing to bring up to date
	}
	t := time.NewTicker(s.cfg.Database.WarmRefreshEvery())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.warmOnce(ctx, budget, false)
		}
	}
}

// warmOnce runs one warm-up and logs it (the first at info level).
func (s *Server) warmOnce(ctx context.Context, budget store.WarmBudget, first bool) {
	rep, err := s.DB.Warm(ctx, budget, &s.warm.bytes)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			s.log.Warn("ledger warm-up stopped; devices read the rest from the disk as they need it", "err", err.Error())
		}
		return
	}
	s.warm.mapped.Store(rep.MappedBytes)
	s.warm.runs.Add(1)
	attrs := []any{"mib", rep.Bytes >> 20, "mapped_mib", rep.MappedBytes >> 20, "page_reads", rep.PageReads, "seconds", rep.Seconds, "budget_mib", budget.Read >> 20, "map_budget_mib", budget.Map >> 20}
	for _, t := range rep.Trees {
		attrs = append(attrs, t.Index, t.Pages)
		if t.Partial && first {
			s.log.Warn("ledger warm-up: the budget ended inside an index; raise database.warm_mib if the machine has the memory", "index", t.Index)
		}
	}
	if first {
		s.log.Info("ledger warmed", attrs...)
	} else {
		s.log.Debug("ledger warmed again", attrs...)
	}
}

// checkBufferFit warns at start when the PostgreSQL server's shared buffers
// are short of the ledger's device-key index (store.BufferFit): then every
// new device reads a page of it from the OS cache or the disk and writes
// one back, and provisioning slows as the ledger grows.
func (s *Server) checkBufferFit(ctx context.Context) {
	fit, ok, err := s.DB.BufferFit(ctx)
	switch {
	case err != nil:
		if !errors.Is(err, context.Canceled) {
			s.log.Warn("could not compare PostgreSQL's shared buffers with the device-key index", "err", err.Error())
		}
	case ok && fit.Short():
		s.log.Warn("PostgreSQL's shared_buffers is less than twice the ledger's device-key index: each new device reads a page of that index from the OS cache or the disk and writes one back; raise shared_buffers (docs/operations.md, \"PostgreSQL for a large ledger\")",
			"shared_buffers_mib", fit.SharedBuffers>>20, "key_index_mib", fit.KeyIndex>>20)
	}
}
