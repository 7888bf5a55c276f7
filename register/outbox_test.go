package register_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/register"
	"github.com/tacline/tacline/register/registertest"
	"github.com/tacline/tacline/register/sim"
	"github.com/tacline/tacline/register/wire"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

const tac = 1234500

// ledger opens a fresh ledger with the outbox sink and n reserved IMEIs
// (SNR 0..n-1), one per device D<snr>.
func ledger(t *testing.T, d store.Dialect, n int) *store.DB {
	t.Helper()
	return ledgerAt(t, storetest.Config(t, d), n)
}

func ledgerAt(t *testing.T, cfg store.Config, n int) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.AddSink(register.Outbox{})
	rows := make([]registertest.Row, n)
	for i := range rows {
		rows[i] = registertest.Row{SNR: uint32(i), State: "RESERVED", Device: device(uint32(i))}
	}
	registertest.Seed(t, db, tac, rows)
	return db
}

func device(snr uint32) string {
	return "D-" + string(rune('A'+snr%26)) + strings.Repeat("x", int(snr%3)) + imei14(snr)
}

func imei14(snr uint32) string {
	m, _ := imei.New(tac, snr)
	return m.Digits14()
}

func bind(t *testing.T, db *store.DB, snrs ...uint32) {
	t.Helper()
	for _, s := range snrs {
		registertest.Transition(t, db, tac, []uint32{s}, "BOUND", store.EventIMEIBound, device(s))
	}
}

func simulator(t testing.TB) (*sim.Server, *httptest.Server) {
	t.Helper()
	return registertest.Simulator(t, sim.Faults{})
}

func config(url string) register.Config {
	return register.Config{URL: url, BatchSize: 50, BatchAge: time.Millisecond, Timeout: 5 * time.Second, Lease: 10 * time.Second,
		Poll: 10 * time.Millisecond, Backoff: register.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond}}
}

func setFaults(t *testing.T, url string, f sim.Faults) {
	t.Helper()
	b, _ := json.Marshal(f)
	req, _ := http.NewRequest(http.MethodPut, url+"/admin/faults", bytes.NewReader(b))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("set faults: %v %v", resp, err)
	}
	resp.Body.Close()
}

func simStats(t *testing.T, url string) sim.Stats {
	t.Helper()
	resp, err := http.Get(url + "/admin/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s sim.Stats
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func status(t *testing.T, db *store.DB) register.Report {
	t.Helper()
	r, err := register.Status(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestOutboxRowsCommitWithLedger(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			db := ledger(t, d, 3)
			bind(t, db, 0, 1)
			// A change that rolls back leaves no outbox row.
			boom := errors.New("boom")
			err := db.InTx(context.Background(), func(tx *store.Tx) error {
				tx.Emit(store.Event{Type: store.EventIMEIBound, IMEIs: []string{imeiOf(2)}, DeviceSerial: "X"})
				return boom
			})
			if !errors.Is(err, boom) {
				t.Fatal(err)
			}
			// Voiding a reserved IMEI is reported too; other events are not.
			registertest.Transition(t, db, tac, []uint32{2}, "VOIDED", store.EventIMEIVoided, "")
			registertest.Transition(t, db, tac, []uint32{2}, "VOIDED", store.EventIMEIReserved, "")
			r := status(t, db)
			if r.Counts[register.StatePending] != 3 || r.Pending != 3 || r.OldestPending == nil {
				t.Fatalf("status %+v", r)
			}
			var brand, model, ev, dev string
			if err := storetest.Reader(db).QueryRow(`SELECT brand, model, event, device_id FROM register_outbox ORDER BY id DESC LIMIT 1`).Scan(&brand, &model, &ev, &dev); err != nil {
				t.Fatal(err)
			}
			if brand != registertest.Brand || model != registertest.Model || ev != wire.EventVoided || dev != "QIMEI"+imei14(2) {
				t.Fatalf("row %s %s %s %s", brand, model, ev, dev)
			}
		})
	}
}

func imeiOf(snr uint32) string {
	m, _ := imei.New(tac, snr)
	return m.String()
}

func TestDeliveryResults(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			db := ledger(t, d, 4)
			_, ts := simulator(t)
			reg := prometheus.NewRegistry()
			m, err := register.NewMetrics(reg, db)
			if err != nil {
				t.Fatal(err)
			}
			w, err := register.NewWorker(db, config(ts.URL), m, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			// Someone else holds IMEI 3 at the register: a clone.
			clone := wire.Item{IdempotencyKey: "other", IMEI: imeiOf(3), TAC: imeiOf(3)[:8], Event: wire.EventRegistered,
				DeviceID: "FOREIGN", Brand: "Other", OccurredAt: time.Now()}
			b, _ := json.Marshal(wire.Request{Items: []wire.Item{clone}})
			if resp, err := http.Post(ts.URL+wire.Path, "application/json", bytes.NewReader(b)); err != nil || resp.StatusCode != 200 {
				t.Fatalf("seed clone: %v", err)
			}
			bind(t, db, 0, 1, 3)
			registertest.Transition(t, db, tac, []uint32{0}, "REVOKED", store.EventIMEIRevoked, device(0))

			// The first batch holds 0, 1 and 3 registered; 0's revocation waits
			// for its registration (ordered per IMEI).
			n, err := w.DeliverOnce(ctx)
			if err != nil || n != 3 {
				t.Fatalf("DeliverOnce = %d, %v", n, err)
			}
			n, err = w.DeliverOnce(ctx)
			if err != nil || n != 1 {
				t.Fatalf("second DeliverOnce = %d, %v", n, err)
			}
			if n, _ := w.DeliverOnce(ctx); n != 0 {
				t.Fatalf("conflict retried: %d rows claimed", n)
			}
			r := status(t, db)
			if r.Counts[register.StateAcknowledged] != 3 || r.Counts[register.StateRejected] != 1 || r.CloneAlerts != 1 || r.Pending != 0 {
				t.Fatalf("status %+v", r)
			}
			if len(r.RecentRejections) != 1 || r.RecentRejections[0].IMEI != imeiOf(3) || !r.RecentRejections[0].CloneAlert ||
				!strings.Contains(r.RecentRejections[0].Reason, "conflict") {
				t.Fatalf("rejections %+v", r.RecentRejections)
			}
			if r.LastAck == nil || r.LastAck.Event != wire.EventRevoked || r.LastAck.ReceiptID == "" {
				t.Fatalf("last ack %+v", r.LastAck)
			}
			defer func() {
				// Requeued, the clone is refused again: still one alert.
				m, _ := imei.New(tac, 3)
				if n, err := register.Requeue(ctx, db, m, "test"); err != nil || n != 1 {
					t.Fatalf("Requeue = %d, %v", n, err)
				}
				if _, err := register.Requeue(ctx, db, m, "test"); !tacerr.Is(err, tacerr.NotFound) {
					t.Fatalf("second Requeue = %v", err)
				}
				if n, err := w.DeliverOnce(ctx); err != nil || n != 1 {
					t.Fatalf("DeliverOnce after requeue = %d, %v", n, err)
				}
				if r := status(t, db); r.CloneAlerts != 1 || r.Pending != 0 {
					t.Fatalf("status after requeue %+v", r)
				}
			}()
			for _, tc := range []struct {
				name, label string
				want        float64
			}{
				{"tacline_register_results_total", "accepted", 3},
				{"tacline_register_results_total", "conflict", 1},
				{"tacline_register_clone_alerts", "", 1},
				{"tacline_register_outbox_events", "rejected", 1},
				{"tacline_register_outbox_events", "pending", 0},
				{"tacline_register_lag_seconds", "", 0},
			} {
				if got := metricValue(t, reg, tc.name, tc.label); got != tc.want {
					t.Errorf("%s{%s} = %v, want %v", tc.name, tc.label, got, tc.want)
				}
			}
		})
	}
}

func TestGarbageReplyKeepsBatchPending(t *testing.T) {
	db := ledger(t, store.SQLite, 2)
	_, ts := simulator(t)
	setFaults(t, ts.URL, sim.Faults{GarbageRate: 1})
	w, err := register.NewWorker(db, config(ts.URL), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	bind(t, db, 0, 1)
	_, err = w.DeliverOnce(context.Background())
	if err == nil || !strings.Contains(err.Error(), "malformed reply") {
		t.Fatalf("DeliverOnce = %v", err)
	}
	r := status(t, db)
	if r.Counts[register.StatePending] != 2 || !strings.Contains(r.LastError, "malformed reply") {
		t.Fatalf("status %+v", r)
	}
	// Once the register answers properly, the batch goes through as
	// duplicates of what it already applied.
	setFaults(t, ts.URL, sim.Faults{})
	time.Sleep(20 * time.Millisecond) // past the backoff
	if n, err := w.DeliverOnce(context.Background()); err != nil || n != 2 {
		t.Fatalf("DeliverOnce = %d, %v", n, err)
	}
	s := simStats(t, ts.URL)
	if s.Applied != 2 || s.Items[wire.StatusDuplicate] != 2 {
		t.Fatalf("sim stats %+v", s)
	}
}

func TestReplicasNeverSendTheSameRow(t *testing.T) {
	cfg := storetest.Config(t, store.Postgres)
	db := ledgerAt(t, cfg, 120)
	_, ts := simulator(t)
	for s := uint32(0); s < 120; s++ {
		bind(t, db, s)
	}
	wcfg := config(ts.URL)
	wcfg.BatchSize = 7
	var wg sync.WaitGroup
	for range 4 {
		// Each replica has its own pool, as separate processes would.
		rdb, err := store.Open(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer rdb.Close()
		w, err := register.NewWorker(rdb, wcfg, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n, err := w.DeliverOnce(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				if n == 0 {
					return
				}
			}
		}()
	}
	wg.Wait()
	s := simStats(t, ts.URL)
	if s.Applied != 120 || s.Items[wire.StatusAccepted] != 120 || s.Items[wire.StatusDuplicate] != 0 {
		t.Fatalf("sim stats %+v: a row was sent twice or not at all", s)
	}
	if r := status(t, db); r.Counts[register.StateAcknowledged] != 120 {
		t.Fatalf("status %+v", r)
	}
}

func TestConfigValidateNamesField(t *testing.T) {
	good := register.Config{URL: "http://127.0.0.1:1"}.WithDefaults()
	mtls := register.TLS{CertFile: "c.pem", KeyFile: "k.pem"}
	for _, tc := range []struct {
		name   string
		mutate func(*register.Config)
		field  string
	}{
		{"good", func(*register.Config) {}, ""},
		{"no url", func(c *register.Config) { c.URL = "" }, "register.url"},
		{"ftp url", func(c *register.Config) { c.URL = "ftp://x" }, "register.url"},
		{"batch size", func(c *register.Config) { c.BatchSize = 5000 }, "register.batch_size"},
		{"lease below timeout", func(c *register.Config) { c.Lease = time.Second }, "register.lease"},
		{"backoff max", func(c *register.Config) { c.Backoff.Max = time.Millisecond }, "register.backoff.max"},
		{"breaker", func(c *register.Config) { c.Breaker.Failures = -1 }, "register.breaker.failures"},
		{"tls pair", func(c *register.Config) { c.TLS.CertFile = "x.pem" }, "register.tls.key_file"},
		{"plain http to a remote host", func(c *register.Config) { c.URL = "http://register.example/" }, "register.url"},
		{"plain http to a LAN address", func(c *register.Config) { c.URL = "http://10.0.0.7:8080/"; c.TLS = mtls }, "register.url"},
		{"plain http to a loopback-looking name", func(c *register.Config) { c.URL = "http://127.0.0.1.nip.io/"; c.TLS = mtls }, "register.url"},
		{"plain http to IPv6 loopback", func(c *register.Config) { c.URL = "http://[::1]:8080/" }, ""},
		{"plain http to localhost", func(c *register.Config) { c.URL = "http://localhost:8080/" }, ""},
		{"plain http to 127.0.0.2", func(c *register.Config) { c.URL = "http://127.0.0.2:8080/" }, ""},
		{"https to a remote host without a client certificate", func(c *register.Config) { c.URL = "https://register.example/" }, "register.tls.cert_file"},
		{"https to a remote host with a client certificate", func(c *register.Config) { c.URL = "https://register.example/"; c.TLS = mtls }, ""},
		{"https to loopback without a client certificate", func(c *register.Config) { c.URL = "https://127.0.0.1:8443/" }, ""},
		{"retention forever", func(c *register.Config) { c.Retention = 0 }, ""},
		{"retention 30 days", func(c *register.Config) { c.Retention = register.DefaultRetention }, ""},
		{"negative retention", func(c *register.Config) { c.Retention = -time.Hour }, "register.retention"},
		{"retention in seconds", func(c *register.Config) { c.Retention = 30 * time.Second }, "register.retention"},
		{"prune batch", func(c *register.Config) { c.PruneBatch = 10001 }, "register.prune_batch"},
		{"url with a query", func(c *register.Config) { c.URL = "http://127.0.0.1:1/api?tenant=x" }, ""},
		{"url with a fragment", func(c *register.Config) { c.URL = "http://127.0.0.1:1/api#v1" }, "register.url"},
		{"url with an empty fragment", func(c *register.Config) { c.URL = "http://127.0.0.1:1/api#" }, "register.url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.mutate(&c)
			err := c.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			e, ok := tacerr.As(err)
			if !ok || e.Field != tc.field || e.Code != tacerr.InvalidConfig {
				t.Fatalf("Validate() = %v, want field %s", err, tc.field)
			}
		})
	}
}

// TestDeliveryURLWithPathAndQuery: a register.url with a path and a query
// (a register that serves several tenants under one API prefix) posts to
// the API below the path with the query kept, with or without a trailing
// slash. The register in front of the simulator answers 404 to any other
// path or query.
func TestDeliveryURLWithPathAndQuery(t *testing.T) {
	for _, suffix := range []string{"/api?tenant=x", "/api/?tenant=x"} {
		t.Run(suffix, func(t *testing.T) {
			_, ts := simulator(t)
			target, err := url.Parse(ts.URL)
			if err != nil {
				t.Fatal(err)
			}
			rp := httputil.NewSingleHostReverseProxy(target)
			var mu sync.Mutex
			var wrong []string
			front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/api"+wire.Path || r.URL.RawQuery != "tenant=x" {
					mu.Lock()
					wrong = append(wrong, r.URL.RequestURI())
					mu.Unlock()
					http.NotFound(w, r)
					return
				}
				r.URL.Path, r.URL.RawQuery = wire.Path, ""
				rp.ServeHTTP(w, r)
			}))
			t.Cleanup(front.Close)
			db := ledger(t, store.SQLite, 2)
			bind(t, db, 0, 1)
			w, err := register.NewWorker(db, config(front.URL+suffix), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			n, err := w.DeliverOnce(context.Background())
			mu.Lock()
			defer mu.Unlock()
			if err != nil || n != 2 || len(wrong) != 0 {
				t.Fatalf("DeliverOnce = %d, %v; requests to other paths: %v", n, err, wrong)
			}
			if s := simStats(t, ts.URL); s.Applied != 2 {
				t.Fatalf("the register applied %d events, want 2", s.Applied)
			}
		})
	}
}

// metricValue gathers reg and returns the value of metric name with the
// given label value (or no label).
func metricValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label != "" && (len(m.GetLabel()) == 0 || m.GetLabel()[0].GetValue() != label) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("metric %s{%s} not found", name, label)
	return 0
}

func TestConfigYAML(t *testing.T) {
	doc := `
url: https://register.example/
tls: {cert_file: c.pem, key_file: k.pem}
batch_size: 200
batch_age: 2s
timeout: 5s
lease: 1m
backoff: {initial: 500ms, max: 2m}
breaker: {failures: 3, cooldown: 10s}
`
	var c register.Config
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.BatchAge != 2*time.Second || c.Backoff.Max != 2*time.Minute || c.Breaker.Failures != 3 || c.Poll != 500*time.Millisecond {
		t.Fatalf("decoded %+v", c)
	}
}
