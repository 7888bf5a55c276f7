package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// ledgerBuckets span 0.1 ms to about 1.6 s: a group-commit batch and its
// queue are a fraction of a request.
var ledgerBuckets = prometheus.ExponentialBuckets(0.0001, 2, 15)

// ledgerMetrics are the group committer's: how long ledger writes wait for
// their batch, how long a batch takes, and how many writes batches carry
// (store.BatchTiming). With tacline_hsm_sign_duration_seconds they split a
// provisioning request's time between the ledger and the HSM.
type ledgerMetrics struct {
	queue   prometheus.Histogram
	batch   prometheus.Histogram
	members prometheus.Counter
}

func registerLedgerMetrics(reg prometheus.Registerer, db *store.DB) error {
	m := &ledgerMetrics{
		queue: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tacline_ledger_queue_seconds",
			Help:    "Time a ledger write (a reservation, a binding, another grouped write) waits for its group-commit batch to start.",
			Buckets: ledgerBuckets,
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tacline_ledger_batch_seconds",
			Help:    "Time a group-commit batch takes, from its transaction's start to its commit (retries of members alone included).",
			Buckets: ledgerBuckets,
		}),
		members: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tacline_ledger_batch_members_total",
			Help: "Ledger writes carried by group-commit batches (over tacline_ledger_batch_seconds_count: the mean batch size).",
		}),
	}
	for _, c := range []prometheus.Collector{m.queue, m.batch, m.members} {
		if err := reg.Register(c); err != nil {
			return tacerr.Wrap(tacerr.Internal, err, "register the ledger's metrics")
		}
	}
	db.SetBatchObserver(m.observe)
	return nil
}

func (m *ledgerMetrics) observe(t store.BatchTiming) {
	m.batch.Observe(t.Run.Seconds())
	m.members.Add(float64(len(t.Queued)))
	for _, q := range t.Queued {
		m.queue.Observe(q.Seconds())
	}
}
