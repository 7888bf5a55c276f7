package register

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/internal/retry"
	"github.com/tacline/tacline/register/wire"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// Row states.
const (
	StatePending      = "pending"
	StateSent         = "sent"
	StateAcknowledged = "acknowledged"
	StateRejected     = "rejected"
)

// claimed is one outbox row being delivered.
type claimed = store.OutboxClaim

// Worker delivers outbox rows to the register.
type Worker struct {
	db     *store.DB
	cfg    Config
	client *http.Client
	// endpoint is the URL batches are posted to (Config.endpoint).
	endpoint string
	metrics  *Metrics
	log      *slog.Logger
	id       string
	seq      atomic.Int64
	// breaker state
	failures  int
	openUntil time.Time
	// A batch the register refuses as a whole with a 4xx that judges its
	// content (400, 413, 422) is sent again in halves (batch: the claim
	// size until a batch is accepted, 0: BatchSize) until the event it
	// refuses is alone. That event is rejected only when the register
	// refused it alone twice and accepted another batch in between
	// (suspect, evidence): a register refusing everything rejects nothing.
	batch    int
	suspect  int64
	evidence bool
	// nextPrune is when Run next deletes acknowledged rows past retention.
	nextPrune time.Time
}

// PruneInterval is how often the delivery worker deletes acknowledged rows
// past register.retention; pruneRoundBatches bounds one round (at the
// default batch, 20000 rows a round), so delivery is never held up for
// long: a larger backlog is worked off over several rounds.
const (
	PruneInterval     = time.Minute
	pruneRoundBatches = 20
)

// NewWorker checks cfg (after defaults) and returns a worker. metrics and
// log may be nil.
func NewWorker(db *store.DB, cfg Config, metrics *Metrics, log *slog.Logger) (*Worker, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	client, err := cfg.httpClient()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	endpoint, err := cfg.endpoint()
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	return &Worker{db: db, cfg: cfg, client: client, endpoint: endpoint, metrics: metrics, log: log,
		id: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), newKey()[19:27])}, nil
}

// Run delivers until ctx ends. It returns nil when ctx is cancelled.
func (w *Worker) Run(ctx context.Context) error {
	for {
		w.maybePrune(ctx)
		wait, err := w.step(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			w.log.Warn("register delivery", "err", err)
		}
		if wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
	}
}

// maybePrune runs one bounded pruning round when retention is set and the
// last round is PruneInterval ago. A failure is logged and retried at the
// next interval; it never stops delivery.
func (w *Worker) maybePrune(ctx context.Context) {
	if w.cfg.Retention <= 0 {
		return
	}
	now := w.db.Now()
	if now.Before(w.nextPrune) {
		return
	}
	w.nextPrune = now.Add(PruneInterval)
	r, err := Prune(ctx, w.db, w.cfg.Retention, w.cfg.PruneBatch, pruneRoundBatches)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("register outbox pruning", "err", err)
		}
		return
	}
	if r.Deleted > 0 {
		w.log.Info("register outbox pruned", "deleted", r.Deleted, "acknowledged_before", r.Before, "batches", r.Batches)
		if r.Batches == pruneRoundBatches {
			w.nextPrune = now // more to delete: next round right away
		}
	}
}

// step does one round: wait out an open breaker, check the outbox, deliver
// one batch when it is full or old enough. It returns how long to wait
// before the next round.
func (w *Worker) step(ctx context.Context) (time.Duration, error) {
	now := w.db.Now()
	if now.Before(w.openUntil) {
		return w.openUntil.Sub(now), nil
	}
	ready, oldest, err := w.db.OutboxReady(ctx, w.cfg.BatchSize)
	if err != nil {
		return w.cfg.Poll, err
	}
	if ready == 0 {
		return w.cfg.Poll, nil
	}
	if ready < int64(w.cfg.BatchSize) {
		if age := now.Sub(oldest); age < w.cfg.BatchAge {
			return min(w.cfg.BatchAge-age, w.cfg.Poll), nil
		}
	}
	n, err := w.DeliverOnce(ctx)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return w.cfg.Poll, nil
	}
	return 0, nil
}

// DeliverOnce claims one batch and delivers it. It returns the number of
// rows claimed. A failed delivery leaves the rows pending with the error
// recorded and a backoff, and counts towards the circuit breaker; the
// error is returned.
func (w *Worker) DeliverOnce(ctx context.Context) (int, error) {
	token := w.id + "/" + strconv.FormatInt(w.seq.Add(1), 10)
	rows, err := w.claim(ctx, token)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	start := time.Now()
	resp, hold, derr := w.send(ctx, rows)
	if w.metrics != nil {
		w.metrics.batchSeconds.Observe(time.Since(start).Seconds())
	}
	if derr != nil && refusesContent(derr) {
		return w.isolate(ctx, token, rows, derr)
	}
	if derr != nil {
		w.failed()
		if hold > 0 {
			// The register throttles tacline, not these events: no batch
			// before its Retry-After.
			w.openUntil = later(w.openUntil, w.db.Now().Add(hold))
		}
		if err := w.retry(ctx, token, rows, derr, hold); err != nil {
			return len(rows), err
		}
		return len(rows), derr
	}
	w.succeeded()
	w.evidence = true
	if w.batch > 0 {
		w.batch = min(w.batch*2, w.cfg.BatchSize)
	}
	return len(rows), w.record(ctx, token, rows, resp)
}

// contentRefusal is the error of a batch the register refused as a whole
// for what it holds (400, 413, 422), not for who sent it or when.
type contentRefusal struct{ error }

func (e contentRefusal) Unwrap() error { return e.error }

func refusesContent(err error) bool {
	var c contentRefusal
	return errors.As(err, &c)
}

// isolate handles a batch the register refused for its content: a batch
// of several events goes back due at once and the next claims are half as
// large; an event refused alone goes back with a backoff the first time,
// and is rejected (the register's answer as its reason; `tacline register
// requeue` sends it again) when the register refuses it alone again after
// it accepted another batch. The other events are delivered meanwhile.
func (w *Worker) isolate(ctx context.Context, token string, rows []claimed, cause error) (int, error) {
	if len(rows) > 1 {
		w.batch = max(1, len(rows)/2)
		w.log.Warn("register refused a batch for its content; sending it again in smaller batches", "rows", len(rows), "next_batch", w.batch, "err", cause.Error())
		return len(rows), w.putBack(ctx, token, rows, cause, func(now time.Time, _ claimed) time.Time { return now })
	}
	row := rows[0]
	if w.suspect != row.ID || !w.evidence {
		w.suspect, w.evidence = row.ID, false
		w.failed()
		if err := w.retry(ctx, token, rows, cause, 0); err != nil {
			return 1, err
		}
		return 1, cause
	}
	w.suspect, w.evidence = 0, false
	m, _ := imei.FromUint64(uint64(row.IMEI14))
	w.log.Warn("register refused an event alone twice while accepting others; rejected", "imei", m.String(), "event", row.Event, "err", cause.Error())
	if w.metrics != nil {
		w.metrics.delivered.WithLabelValues(wire.StatusInvalid).Inc()
	}
	reason := storable(wire.StatusInvalid+": the register refused this event alone ("+cause.Error()+")", maxText)
	_, err := w.db.RecordOutboxResults(ctx, token, []store.OutboxResult{{ID: row.ID, Reason: reason}})
	return 1, err
}

func (w *Worker) claim(ctx context.Context, token string) ([]claimed, error) {
	n := w.cfg.BatchSize
	if w.batch > 0 {
		n = w.batch
	}
	rows, err := w.db.ClaimOutbox(ctx, token, w.cfg.Lease, n)
	slices.SortFunc(rows, func(a, b claimed) int { return cmp.Compare(a.ID, b.ID) })
	return rows, err
}

// send posts the batch and decodes the answer. hold is the register's
// Retry-After of a 429 or 503 answer (at most register.backoff.max), 0
// without one.
func (w *Worker) send(ctx context.Context, rows []claimed) (_ wire.Response, hold time.Duration, _ error) {
	req := wire.Request{Items: make([]wire.Item, len(rows))}
	for i, c := range rows {
		m, err := imei.FromUint64(uint64(c.IMEI14))
		if err != nil {
			return wire.Response{}, 0, tacerr.Wrap(tacerr.Internal, err, "outbox row %d", c.ID)
		}
		req.Items[i] = wire.Item{IdempotencyKey: c.Key, IMEI: m.String(), TAC: m.TACString(), Event: c.Event,
			DeviceID: c.Device, Model: c.Model, Brand: c.Brand, OccurredAt: time.UnixMicro(c.Occurred).UTC()}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return wire.Response{}, 0, tacerr.Wrap(tacerr.Internal, err, "encode batch")
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, w.endpoint, bytes.NewReader(body))
	if err != nil {
		return wire.Response{}, 0, tacerr.Wrap(tacerr.InvalidConfig, err, "register.url")
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := w.client.Do(hreq)
	if err != nil {
		return wire.Response{}, 0, tacerr.Wrap(tacerr.Unavailable, err, "register unreachable")
	}
	defer resp.Body.Close()
	if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return wire.Response{}, 0, tacerr.New(tacerr.Unavailable, "register answered %s, a redirect to %.200q: not followed (tacline posts only to register.url; point it at the new address if the register moved)", resp.Status, loc)
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		hold = retry.After(resp.Header.Get("Retry-After"), w.db.Now(), w.cfg.Backoff.Max)
	}
	if resp.StatusCode != http.StatusOK {
		snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		err := tacerr.New(tacerr.Unavailable, "register answered %s: %s", resp.Status, strings.TrimSpace(string(snippet)))
		switch resp.StatusCode {
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
			return wire.Response{}, 0, contentRefusal{err}
		}
		return wire.Response{}, hold, err
	}
	out, err := wire.DecodeResponse(resp.Body, req)
	if err != nil {
		return wire.Response{}, 0, tacerr.Wrap(tacerr.Unavailable, err, "register answered 200 with a malformed reply; the batch stays pending")
	}
	return out, 0, nil
}

// record stores the per-item results.
func (w *Worker) record(ctx context.Context, token string, rows []claimed, resp wire.Response) error {
	results := make([]store.OutboxResult, len(resp.Results))
	for i, res := range resp.Results {
		results[i] = store.OutboxResult{ID: rows[i].ID}
		switch res.Status {
		case wire.StatusAccepted, wire.StatusDuplicate:
			results[i].Ack, results[i].ReceiptID = true, storable(res.ReceiptID, maxText)
		default:
			results[i].Reason, results[i].CloneAlert = storable(res.Status+": "+res.Reason, maxText), res.Status == wire.StatusConflict
		}
	}
	// lost: our claim expired and another worker took the row.
	lost, err := w.db.RecordOutboxResults(ctx, token, results)
	if err != nil {
		return err
	}
	if lost > 0 {
		w.log.Warn("register results arrived after the claim expired; another worker re-sends them under the same keys", "rows", lost)
	}
	if w.metrics != nil {
		for _, res := range resp.Results {
			w.metrics.delivered.WithLabelValues(res.Status).Inc()
		}
	}
	for i, res := range resp.Results {
		if res.Status == wire.StatusConflict || res.Status == wire.StatusInvalid {
			m, _ := imei.FromUint64(uint64(rows[i].IMEI14))
			// The reason as stored: bounded, control characters replaced.
			w.log.Warn("register rejected an event", "imei", m.String(), "event", rows[i].Event, "status", res.Status, "reason", results[i].Reason)
		}
	}
	return nil
}

// retry puts the batch back with a backoff, at least hold.
func (w *Worker) retry(ctx context.Context, token string, rows []claimed, cause error, hold time.Duration) error {
	return w.putBack(ctx, token, rows, cause, func(now time.Time, c claimed) time.Time {
		return now.Add(max(w.backoff(c.Attempts), hold))
	})
}

// putBack counts a failed batch and makes its rows pending again, each due
// when due says, with cause recorded.
func (w *Worker) putBack(ctx context.Context, token string, rows []claimed, cause error, due func(time.Time, claimed) time.Time) error {
	if w.metrics != nil {
		w.metrics.batchFailures.Inc()
	}
	return w.db.RetryOutbox(ctx, token, storable(cause.Error(), maxText), rows, due)
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// maxText bounds the register's text (a reason, a receipt id, an error
// page's head) kept in an outbox row.
const maxText = 500

// storable returns the register's text s as every ledger database stores
// it: invalid UTF-8 and control characters (NUL among them, which
// PostgreSQL refuses in text) become U+FFFD, and it is cut at a character
// boundary to at most max bytes. Without it one such byte failed the
// recording of a whole batch, every time the register answered it.
func storable(s string, max int) string {
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if unicode.IsControl(r) {
			r = utf8.RuneError
		}
		if b.Len()+utf8.RuneLen(r) > max {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

// backoff is the delay after the attempts-th failure: the policy of
// register.backoff (internal/retry: doubling, capped, full jitter).
func (w *Worker) backoff(attempts int) time.Duration {
	return w.cfg.Backoff.Policy().Delay(attempts)
}

func (w *Worker) failed() {
	w.failures++
	if w.failures >= w.cfg.Breaker.Failures {
		w.openUntil = w.db.Now().Add(w.cfg.Breaker.Cooldown)
		w.failures = w.cfg.Breaker.Failures - 1 // half-open: one more failure re-opens
		w.log.Warn("register circuit breaker open", "cooldown", w.cfg.Breaker.Cooldown)
		if w.metrics != nil {
			w.metrics.breakerOpen.Set(1)
		}
	}
}

func (w *Worker) succeeded() {
	w.failures = 0
	if w.metrics != nil {
		w.metrics.breakerOpen.Set(0)
	}
}
