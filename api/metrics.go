package api

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tacline/tacline/tacerr"
)

// metrics are the server's Prometheus collectors.
type metrics struct {
	requests *prometheus.CounterVec   // route, code (HTTP status)
	duration *prometheus.HistogramVec // route
	errors   *prometheus.CounterVec   // code (tacerr)
	keyReuse prometheus.Counter
	hsmSign  prometheus.Histogram
	// keyReuseHooked: the provisioner counts key reuse itself
	// (KeyReuseObserver), so key_reused errors are not counted again.
	keyReuseHooked bool
}

// latencyBuckets span 0.25 ms to about 4 s.
var latencyBuckets = prometheus.ExponentialBuckets(0.00025, 2, 15)

func newMetrics(reg prometheus.Registerer, p Provisioner, log *slog.Logger) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tacline_http_requests_total",
			Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tacline_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route pattern.",
			Buckets: latencyBuckets,
		}, []string{"route"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tacline_errors_total",
			Help: "Error responses by tacline error code.",
		}, []string{"code"}),
		keyReuse: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tacline_key_reuse_total",
			Help: "Requests refused because the device public key is already bound to another device (a cloning signal).",
		}),
		hsmSign: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tacline_hsm_sign_duration_seconds",
			Help:    "Time the HSM takes to sign one device certificate.",
			Buckets: latencyBuckets,
		}),
	}
	pools := &poolCollector{p: p, log: log, desc: prometheus.NewDesc(
		"tacline_pool_remaining", "SNRs of a pool never handed out.", []string{"pool"}, nil)}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.errors, m.keyReuse, m.hsmSign, pools} {
		if err := reg.Register(c); err != nil {
			return nil, tacerr.Wrap(tacerr.Internal, err, "register the API's metrics (is a second server using the same registry?)")
		}
	}
	return m, nil
}

// countError counts an error response.
func (m *metrics) countError(code tacerr.Code) {
	m.errors.WithLabelValues(string(code)).Inc()
	if code == tacerr.KeyReused && !m.keyReuseHooked {
		m.keyReuse.Inc()
	}
}

// poolCollector reports each pool's remaining SNRs from
// Provisioner.PoolsRemaining at scrape time (one read of the pools table, no
// usage counts: a scrape every few seconds must not scan the ledger).
type poolCollector struct {
	p    Provisioner
	log  *slog.Logger
	desc *prometheus.Desc
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pools, err := c.p.PoolsRemaining(ctx)
	if err != nil {
		// A scrape must not fail because the ledger is slow: the gauge is
		// missing for this scrape and the cause is logged.
		c.log.Warn("metrics: read pool utilisation", "err", err.Error(), "code", string(tacerr.CodeOf(err)))
		return
	}
	for _, p := range pools {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(p.Free), p.Name)
	}
}
