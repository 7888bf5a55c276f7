// Package registertest puts ledger rows into a real test database for the
// register packages' tests (through storetest's raw seeding), standing in
// for the allocator and provisioner (which own those writes in production). It also changes
// IMEI states with the matching store.Event, as the provisioner does, so
// that sinks such as the register outbox see real transactions.
package registertest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/internal/openapitest"
	"github.com/tacline/tacline/register/sim"
	"github.com/tacline/tacline/register/wire"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// Brand and Model of every seeded TAC.
const (
	Brand = "Acme"
	Model = "Phone 1"
)

// Row is one ledger IMEI to seed.
type Row struct {
	SNR    uint32
	State  string // RESERVED, BOUND, VOIDED, REVOKED
	Device string // device serial ("" for RESERVED without device)
	Slot   int
}

// Seed creates TAC tac (brand Brand, model Model) with one pool over all
// its serials and the given rows, one reservation per device (rows without
// a device get one each). It emits no events.
func Seed(t testing.TB, db *store.DB, tac uint32, rows []Row) {
	t.Helper()
	seed := make([]storetest.SeedIMEI, len(rows))
	for i, r := range rows {
		seed[i] = storetest.SeedIMEI{SNR: r.SNR, State: r.State, Device: r.Device, Slot: r.Slot}
	}
	if err := storetest.SeedLedger(context.Background(), db, tac, Brand, Model, seed); err != nil {
		t.Fatalf("seed ledger: %v", err)
	}
}

// Transition moves the IMEIs of one device to state and emits event (a
// store.Event* type) in the same transaction, as the provisioner does.
func Transition(t testing.TB, db *store.DB, tac uint32, snrs []uint32, state, event, device string) {
	t.Helper()
	if err := TransitionErr(context.Background(), db, tac, snrs, state, event, device); err != nil {
		t.Fatal(err)
	}
}

// TransitionErr is Transition returning its error (for goroutines other
// than the test's).
func TransitionErr(ctx context.Context, db *store.DB, tac uint32, snrs []uint32, state, event, device string) error {
	err := db.InTx(ctx, func(tx *store.Tx) error {
		ev := store.Event{Type: event, TAC: imei.FormatTAC(tac), DeviceSerial: device, Actor: "test"}
		for _, s := range snrs {
			m, _ := imei.New(tac, s)
			if err := storetest.SetIMEIState(tx, m.Uint64(), state); err != nil {
				return fmt.Errorf("IMEI %s: %w", m, err)
			}
			ev.IMEIs = append(ev.IMEIs, m.String())
		}
		tx.Emit(ev)
		return nil
	})
	if err != nil {
		return fmt.Errorf("transition to %s: %w", state, err)
	}
	return nil
}

// Drain calls deliverOnce (a register.Worker's DeliverOnce) until it claims
// nothing, failing t on an error.
func Drain(t testing.TB, deliverOnce func(context.Context) (int, error)) {
	t.Helper()
	for {
		n, err := deliverOnce(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

// Applied returns the events the register simulator at url applied, in
// the order it applied them.
func Applied(t testing.TB, url string) []sim.Applied {
	t.Helper()
	resp, err := http.Get(url + "/admin/applied")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []sim.Applied
	dec := json.NewDecoder(resp.Body)
	for dec.More() {
		var a sim.Applied
		if err := dec.Decode(&a); err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

// Simulator starts a register simulator (faults f) on a loopback HTTP
// server until the test ends. Every exchange with it is checked against
// register/openapi.yaml (CheckRegisterAPI).
func Simulator(t testing.TB, f sim.Faults) (*sim.Server, *httptest.Server) {
	t.Helper()
	s, err := sim.New(filepath.Join(t.TempDir(), "sim.db"), f, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(CheckRegisterAPI(t, s))
	t.Cleanup(func() { ts.Close(); s.Close() })
	return s, ts
}

// CheckRegisterAPI is s's handler checking every exchange of the register
// API against register/openapi.yaml (package internal/openapitest):
// requests, answers, statuses. The simulator's deliberately malformed
// answers (Faults.GarbageRate) are not checked.
func CheckRegisterAPI(t testing.TB, s *sim.Server) http.Handler {
	t.Helper()
	c := registerChecker(t)
	c.Corrupt = func() bool { return s.Faults().GarbageRate > 0 }
	return c.Handler(t, s.Handler())
}

// CheckingProxy is a loopback HTTP server that passes every request to the
// register at target (a simulator process) and checks each exchange against
// register/openapi.yaml, until the test ends. corrupt, when it returns true,
// says the register sends malformed answers on purpose: they are not
// checked. When the register cannot be reached or drops the connection, the
// proxy drops the caller's connection too, so the caller sees what it would
// see without the proxy.
func CheckingProxy(t testing.TB, target string, corrupt func() bool) *httptest.Server {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, _ error) {
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
			return
		}
		panic(http.ErrAbortHandler)
	}
	c := registerChecker(t)
	c.Corrupt = corrupt
	ts := httptest.NewServer(c.Handler(t, rp))
	t.Cleanup(ts.Close)
	return ts
}

// registerChecker checks exchanges against register/openapi.yaml.
func registerChecker(t testing.TB) *openapitest.Checker {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	doc, err := os.ReadFile(filepath.Join(filepath.Dir(here), "..", "openapi.yaml"))
	if err != nil {
		t.Fatalf("register API document: %v", err)
	}
	c, err := openapitest.New("register/openapi.yaml", doc)
	if err != nil {
		t.Fatal(err)
	}
	// The simulator's own paths (admin, DIRBS list download) are not the
	// register API.
	c.Skip = func(r *http.Request) bool { return r.URL.Path != wire.Path }
	c.Refused = RegisterRefused
	return c
}

// RegisterRefused reports whether a register answer refuses a request the
// document forbids: 400, or per-item "invalid" results (the register judges
// items one by one).
func RegisterRefused(_ string, status int, body []byte) bool {
	if status == http.StatusBadRequest {
		return true
	}
	var resp struct {
		Results []struct {
			Status string `json:"status"`
		} `json:"results"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &resp) != nil {
		return false
	}
	for _, r := range resp.Results {
		if r.Status == "invalid" {
			return true
		}
	}
	return false
}
