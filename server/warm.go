package server

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// warmState is what the ledger's warm-up (store.DB.Warm) has done, for
// /metrics: bytes read so far, and whether it has ended (or had nothing
// to do).
type warmState struct {
	bytes atomic.Int64
	done  atomic.Bool
}

var (
	descWarmBytes = prometheus.NewDesc("tacline_ledger_warm_bytes", "Bytes of the SQLite ledger's key indexes read into the page cache since this server started (database.warm_mib).", nil, nil)
	descWarmDone  = prometheus.NewDesc("tacline_ledger_warm_done", "1 once the ledger's start-up warm-up has ended (at once on PostgreSQL or with database.warm_mib -1).", nil, nil)
)

func (w *warmState) Describe(ch chan<- *prometheus.Desc) { ch <- descWarmBytes; ch <- descWarmDone }

func (w *warmState) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descWarmBytes, prometheus.GaugeValue, float64(w.bytes.Load()))
	ch <- prometheus.MustNewConstMetric(descWarmDone, prometheus.GaugeValue, b2f(w.done.Load()))
}

// warmLedger reads the ledger's key indexes into the page cache while the
// server serves (a device that comes first reads what it needs itself, as
// before), and logs what it read.
func (s *Server) warmLedger(ctx context.Context) {
	defer s.warm.done.Store(true)
	budget := s.cfg.Database.WarmBudget()
	if budget <= 0 {
		return
	}
	rep, err := s.DB.Warm(ctx, budget, &s.warm.bytes)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			s.log.Warn("ledger warm-up stopped; devices read the rest from the disk as they need it", "err", err.Error())
		}
		return
	}
	attrs := []any{"mib", rep.Bytes >> 20, "seconds", rep.Seconds, "budget_mib", budget >> 20}
	for _, t := range rep.Trees {
		attrs = append(attrs, t.Index, t.Pages)
		if t.Partial {
			s.log.Warn("ledger warm-up: the budget ended inside an index; raise database.warm_mib if the machine has the memory", "index", t.Index)
		}
	}
	s.log.Info("ledger warmed", attrs...)
}
