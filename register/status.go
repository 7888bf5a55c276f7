package register

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// Report is the outbox's delivery state, as `tacline register status`
// prints it.
type Report struct {
	// Counts holds the number of rows per state (pending, sent,
	// acknowledged, rejected) in the outbox; acknowledged rows deleted by
	// retention are counted in Pruned instead.
	Counts map[string]int64 `json:"counts"`
	// Pruned is the number of acknowledged rows deleted by retention, so
	// Counts[acknowledged] + Pruned events were acknowledged in all.
	Pruned int64 `json:"pruned"`
	// Pending is the number of events not yet acknowledged or rejected
	// (pending + sent), the lag's size.
	Pending int64 `json:"pending"`
	// OldestPending is when the oldest open event was recorded; LagSeconds
	// its age.
	OldestPending *time.Time `json:"oldest_pending,omitempty"`
	LagSeconds    float64    `json:"lag_seconds"`
	// LastError is the most recent delivery error of an open event.
	LastError   string `json:"last_error,omitempty"`
	CloneAlerts int64  `json:"clone_alerts"`
	// RecentRejections lists the latest rejections, newest first.
	RecentRejections []Rejection `json:"recent_rejections"`
	LastAck          *Ack        `json:"last_ack,omitempty"`
}

// Rejection is one event the register refused.
type Rejection struct {
	IMEI       string    `json:"imei"`
	Event      string    `json:"event"`
	Reason     string    `json:"reason"`
	CloneAlert bool      `json:"clone_alert"`
	At         time.Time `json:"at"`
}

// Ack is an acknowledged event.
type Ack struct {
	IMEI      string    `json:"imei"`
	Event     string    `json:"event"`
	ReceiptID string    `json:"receipt_id"`
	At        time.Time `json:"at"`
}

// Status reads the outbox's delivery state. Its cost grows with the
// backlog and the rejections, not with the delivered history.
func Status(ctx context.Context, db *store.DB) (Report, error) {
	r := Report{Counts: map[string]int64{StatePending: 0, StateSent: 0, StateRejected: 0}, RecentRejections: []Rejection{}}
	s, err := db.OutboxStatus(ctx)
	if err != nil {
		return r, err
	}
	r.Counts[StatePending], r.Counts[StateSent], r.Counts[StateRejected] = s.Pending, s.Sent, s.Rejected
	r.Pending = s.Pending + s.Sent
	r.Counts[StateAcknowledged], r.Pruned = s.Stats.Acknowledged, s.Stats.Pruned
	if !s.OldestOpen.IsZero() {
		t := s.OldestOpen
		r.OldestPending = &t
		r.LagSeconds = db.Now().Sub(t).Seconds()
		r.LastError = s.LastError
	}
	r.CloneAlerts = s.CloneAlerts
	for _, j := range s.RecentRejections {
		r.RecentRejections = append(r.RecentRejections, Rejection{IMEI: imeiString(j.IMEI14), Event: j.Event, Reason: j.Reason, CloneAlert: j.CloneAlert, At: j.At})
	}
	if a := s.LastAck; a != nil {
		r.LastAck = &Ack{IMEI: imeiString(a.IMEI14), Event: a.Event, ReceiptID: a.ReceiptID, At: a.At}
	}
	return r, nil
}

func imeiString(n int64) string {
	m, err := imei.FromUint64(uint64(n))
	if err != nil {
		return "invalid"
	}
	return m.String()
}

// Metrics are the register's Prometheus collectors: the outbox figures of
// Status (read from the database at scrape time, so every replica reports
// the same) and this process's delivery counters.
type Metrics struct {
	delivered     *prometheus.CounterVec
	batchFailures prometheus.Counter
	batchSeconds  prometheus.Histogram
	breakerOpen   prometheus.Gauge
}

// NewMetrics creates the collectors and registers them on reg.
func NewMetrics(reg prometheus.Registerer, db *store.DB) (*Metrics, error) {
	m := &Metrics{
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tacline_register_results_total",
			Help: "Register answers per event, by status (accepted, duplicate, conflict, invalid)."}, []string{"status"}),
		batchFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "tacline_register_batch_failures_total",
			Help: "Batches that failed (register down, error status, malformed reply) and stay pending."}),
		batchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tacline_register_batch_seconds",
			Help: "Time to deliver one batch.", Buckets: prometheus.DefBuckets}),
		breakerOpen: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tacline_register_breaker_open",
			Help: "1 while the circuit breaker towards the register is open."}),
	}
	for _, c := range []prometheus.Collector{m.delivered, m.batchFailures, m.batchSeconds, m.breakerOpen, &outboxCollector{db: db}} {
		if err := reg.Register(c); err != nil {
			return nil, tacerr.Wrap(tacerr.Internal, err, "register metrics")
		}
	}
	return m, nil
}

// outboxCollector reports Status at scrape time.
type outboxCollector struct{ db *store.DB }

var (
	descEvents = prometheus.NewDesc("tacline_register_outbox_events", "Outbox events by delivery state (pending, sent, acknowledged, rejected); acknowledged events deleted by retention are in tacline_register_outbox_pruned.", []string{"state"}, nil)
	descPruned = prometheus.NewDesc("tacline_register_outbox_pruned", "Acknowledged outbox events deleted by retention (register.retention).", nil, nil)
	descLag    = prometheus.NewDesc("tacline_register_lag_seconds", "Age of the oldest event not yet acknowledged or rejected (0 when none).", nil, nil)
	descClones = prometheus.NewDesc("tacline_register_clone_alerts", "Events the register refused because it holds the IMEI for another device or manufacturer.", nil, nil)
	descAck    = prometheus.NewDesc("tacline_register_last_ack_timestamp_seconds", "When the register last acknowledged an event (Unix time).", nil, nil)
	descUp     = prometheus.NewDesc("tacline_register_status_up", "1 if the outbox status could be read at scrape time.", nil, nil)
)

func (c *outboxCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEvents, descPruned, descLag, descClones, descAck, descUp} {
		ch <- d
	}
}

func (c *outboxCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := Status(ctx, c.db)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, 1)
	for s, n := range r.Counts {
		ch <- prometheus.MustNewConstMetric(descEvents, prometheus.GaugeValue, float64(n), s)
	}
	ch <- prometheus.MustNewConstMetric(descPruned, prometheus.GaugeValue, float64(r.Pruned))
	ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, r.LagSeconds)
	ch <- prometheus.MustNewConstMetric(descClones, prometheus.GaugeValue, float64(r.CloneAlerts))
	if r.LastAck != nil {
		ch <- prometheus.MustNewConstMetric(descAck, prometheus.GaugeValue, float64(r.LastAck.At.UnixMicro())/1e6)
	}
}

// Requeue sends an IMEI's rejected events again (after a clone alert was
// resolved with the register, say), under their original idempotency keys
// (the register never applied them). It returns how many were requeued.
func Requeue(ctx context.Context, db *store.DB, m imei.IMEI, actor string) (int64, error) {
	n, err := db.RequeueOutbox(ctx, m.Uint64(), actor)
	if err != nil {
		return 0, store.Translate(err, "requeue rejected events of "+m.String())
	}
	if n == 0 {
		return 0, tacerr.Field(tacerr.NotFound, "imei", "IMEI %s has no rejected register events", m)
	}
	return n, nil
}
