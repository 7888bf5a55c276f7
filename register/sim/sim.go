// Package sim is a national register simulator: a real HTTP server speaking
// the register API of docs/register-api.md with its own SQLite store (never
// the ledger). tacline's demo, tests and benchmarks report to it.
//
// It promises what a real register must: every item is applied at most once
// per idempotency key (a key seen again is answered duplicate with the
// first receipt); an IMEI held by another device or manufacturer is
// refused as conflict; a batch is applied in one transaction. It records
// every request it receives, so tests can compare events delivered with
// events applied, and it injects faults on command: failures (503 without
// applying), latency, dropped connections (the batch is applied, then the
// connection is closed without an answer) and garbage answers (applied, then
// 200 with a body that is not a response), set at start or at run time
// through PUT /admin/faults.
//
// Endpoints: POST /v1/registrations; GET /v1/registration-list.csv (the
// DIRBS registration list of registered IMEIs); GET /admin/stats;
// GET|PUT /admin/faults; GET /admin/applied (JSON lines, in apply order).
package sim

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/register/wire"
	"github.com/tacline/tacline/tacerr"
)

// Faults are the injected faults. Rates are probabilities in [0, 1] drawn
// per request.
type Faults struct {
	FailRate    float64       `json:"fail_rate"`
	DropRate    float64       `json:"drop_rate"`
	GarbageRate float64       `json:"garbage_rate"`
	Latency     time.Duration `json:"latency"`
}

// Validate names the first wrong field.
func (f Faults) Validate() error {
	for _, r := range []struct {
		name string
		v    float64
	}{{"fail_rate", f.FailRate}, {"drop_rate", f.DropRate}, {"garbage_rate", f.GarbageRate}} {
		if !(r.v >= 0 && r.v <= 1) {
			return tacerr.Field(tacerr.InvalidInput, r.name, "%v is not a probability: give a number from 0 to 1", r.v)
		}
	}
	if f.Latency < 0 || f.Latency > time.Minute {
		return tacerr.Field(tacerr.InvalidInput, "latency", "%s is out of range: give 0 to 1m", f.Latency)
	}
	return nil
}

// Config starts a simulator.
type Config struct {
	Listen string // host:port; loopback only
	DB     string // SQLite file of the simulator's own store
	Faults Faults
}

// Server is a running simulator's handler and store.
type Server struct {
	db     *sql.DB
	log    *slog.Logger
	mu     sync.Mutex // serialises batches (one SQLite writer) and guards faults
	faults Faults
}

// New opens the simulator's store.
func New(dbPath string, f Faults, log *slog.Logger) (*Server, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	if dbPath == "" {
		return nil, tacerr.Field(tacerr.InvalidInput, "db", "is required: the simulator's SQLite file")
	}
	db, err := openDB(dbPath)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Unavailable, err, "register simulator store")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{db: db, log: log, faults: f}, nil
}

// Close closes the store.
func (s *Server) Close() error { return s.db.Close() }

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+wire.Path, s.registrations)
	mux.HandleFunc("GET /v1/registration-list.csv", s.list)
	mux.HandleFunc("GET /admin/stats", s.getStats)
	mux.HandleFunc("GET /admin/faults", s.getFaults)
	mux.HandleFunc("PUT /admin/faults", s.putFaults)
	mux.HandleFunc("GET /admin/applied", s.applied)
	return mux
}

// Run listens on cfg.Listen and serves until ctx ends. ready, if not nil,
// is called with the bound address (useful with port 0).
func Run(ctx context.Context, cfg Config, log *slog.Logger, ready func(addr string)) error {
	host, _, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return tacerr.Field(tacerr.InvalidInput, "listen", "%q: give host:port, e.g. 127.0.0.1:8089", cfg.Listen)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return tacerr.Field(tacerr.InvalidInput, "listen", "%q is not a loopback address: the simulator only listens on 127.0.0.1 or ::1", host)
	}
	s, err := New(cfg.DB, cfg.Faults, log)
	if err != nil {
		return err
	}
	defer s.Close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return tacerr.Wrap(tacerr.Unavailable, err, "listen on %s", cfg.Listen)
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	if ready != nil {
		ready(ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	case err := <-errc:
		return err
	}
}

// Faults returns the faults in force.
func (s *Server) Faults() Faults { return s.currentFaults() }

func (s *Server) currentFaults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

func (s *Server) registrations(w http.ResponseWriter, r *http.Request) {
	f := s.currentFaults()
	if f.Latency > 0 {
		select {
		case <-time.After(f.Latency):
		case <-r.Context().Done():
			return
		}
	}
	req, derr := wire.DecodeRequest(r.Body)
	items := len(req.Items)
	if f.FailRate > 0 && rand.Float64() < f.FailRate {
		if _, err := recordRequest(r.Context(), s.db, items, "failed"); err != nil {
			s.internal(w, err)
			return
		}
		http.Error(w, "injected failure", http.StatusServiceUnavailable)
		return
	}
	if derr != nil {
		if _, err := recordRequest(r.Context(), s.db, 0, "bad_request"); err != nil {
			s.internal(w, err)
			return
		}
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": derr.Error()})
		return
	}
	s.mu.Lock()
	id, err := recordRequest(r.Context(), s.db, items, "received")
	var results []wire.Result
	if err == nil {
		results, err = apply(r.Context(), s.db, id, req)
	}
	s.mu.Unlock()
	if err != nil {
		s.internal(w, err)
		return
	}
	switch {
	case f.DropRate > 0 && rand.Float64() < f.DropRate:
		s.setOutcome(r.Context(), id, "dropped")
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler)
	case f.GarbageRate > 0 && rand.Float64() < f.GarbageRate:
		s.setOutcome(r.Context(), id, "garbage")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, `{"results": [{"idempotency_key": 17, "status"`)
		return
	}
	writeJSON(w, http.StatusOK, wire.Response{Results: results})
}

func (s *Server) setOutcome(ctx context.Context, id int64, outcome string) {
	if _, err := s.db.ExecContext(ctx, sqlSetOutcome, outcome, id); err != nil {
		s.log.Error("record request outcome", "err", err)
	}
}

func (s *Server) internal(w http.ResponseWriter, err error) {
	s.log.Error("register simulator", "err", err)
	http.Error(w, "register simulator store error", http.StatusInternalServerError)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

func (s *Server) getStats(w http.ResponseWriter, r *http.Request) {
	st, err := stats(r.Context(), s.db)
	if err != nil {
		s.internal(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) getFaults(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.currentFaults())
}

func (s *Server) putFaults(w http.ResponseWriter, r *http.Request) {
	f := s.currentFaults()
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "faults: " + err.Error()})
		return
	}
	if err := f.Validate(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	s.mu.Lock()
	s.faults = f
	s.mu.Unlock()
	s.log.Info("faults changed", "fail_rate", f.FailRate, "drop_rate", f.DropRate, "garbage_rate", f.GarbageRate, "latency", f.Latency)
	writeJSON(w, http.StatusOK, f)
}

func (s *Server) applied(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/jsonl")
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	if err := appliedList(r.Context(), s.db, func(a Applied) error { return enc.Encode(a) }); err != nil {
		s.log.Error("list applied", "err", err)
	}
	bw.Flush()
}

// DIRBSHeader is the DIRBS registration list header.
const DIRBSHeader = "approved_imei,make,model,status,model_number,brand_name,device_type,radio_interface,device_id"

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	rows, err := s.db.QueryContext(r.Context(), sqlHoldingsList)
	if err != nil {
		s.internal(w, err)
		return
	}
	defer rows.Close()
	w.Header().Set("Content-Type", "text/csv")
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	fmt.Fprintln(bw, DIRBSHeader)
	for rows.Next() {
		var n uint64
		var device, brand, model, status string
		if err := rows.Scan(&n, &device, &brand, &model, &status); err != nil {
			s.log.Error("list holdings", "err", err)
			return
		}
		if status != wire.EventRegistered {
			continue
		}
		m, err := imei.FromUint64(n)
		if err != nil {
			s.log.Error("list holdings", "err", err)
			return
		}
		fmt.Fprintf(bw, "%s,%s,%s,whitelist,,%s,,,%s\n", m.Digits14(), csvField(brand), csvField(model), csvField(brand), device)
	}
	if err := rows.Err(); err != nil && !errors.Is(err, context.Canceled) {
		s.log.Error("list holdings", "err", err)
	}
}

// csvField quotes a field when it needs it.
func csvField(s string) string {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ',', '"', '\n', '\r':
			b := []byte{'"'}
			for j := 0; j < len(s); j++ {
				if s[j] == '"' {
					b = append(b, '"')
				}
				b = append(b, s[j])
			}
			return string(append(b, '"'))
		}
	}
	return s
}
