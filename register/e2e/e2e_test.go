package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/register"
	"github.com/tacline/tacline/register/reconcile"
	"github.com/tacline/tacline/register/registertest"
	"github.com/tacline/tacline/register/sim"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

var bin string

func TestMain(m *testing.M) {
	bin = os.Getenv("TACLINE_BIN")
	if bin == "" {
		dir, err := os.MkdirTemp("", "tacline-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		bin = filepath.Join(dir, "tacline")
		out, err := exec.Command("go", "build", "-o", bin, "github.com/tacline/tacline/cmd/tacline").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build tacline: %v\n%s", err, out)
			os.Exit(1)
		}
		code := m.Run()
		os.RemoveAll(dir)
		os.Exit(code)
	}
	os.Exit(m.Run())
}

const tac = 1234500

// env is one test's ledger, shared with the worker processes.
type env struct {
	t       *testing.T
	dir     string
	cfg     store.Config
	db      *store.DB
	garbage atomic.Bool // the simulator answers garbage on purpose
}

// newEnv makes a SQLite ledger with devices reserved IMEIs.
func newEnv(t *testing.T, devices int) *env {
	t.Helper()
	dir := t.TempDir()
	return newEnvAt(t, dir, store.Config{Driver: store.SQLite, DSN: filepath.Join(dir, "ledger.db")}, devices)
}

func newEnvAt(t *testing.T, dir string, cfg store.Config, devices int) *env {
	t.Helper()
	e := &env{t: t, dir: dir, cfg: cfg}
	db, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.AddSink(register.Outbox{})
	e.db = db
	rows := make([]registertest.Row, devices)
	for i := range rows {
		rows[i] = registertest.Row{SNR: uint32(i), State: "RESERVED", Device: fmt.Sprintf("SN%06d", i)}
	}
	registertest.Seed(t, db, tac, rows)
	return e
}

func (e *env) transition(snr uint32, state, event string) {
	registertest.Transition(e.t, e.db, tac, []uint32{snr}, state, event, fmt.Sprintf("SN%06d", snr))
}

func (e *env) bindAll(from, to uint32) {
	for s := from; s < to; s++ {
		e.transition(s, "BOUND", store.EventIMEIBound)
	}
}

// proc is a started tacline process.
type proc struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
}

func (e *env) start(name string, args ...string) *proc {
	e.t.Helper()
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	p := &proc{cmd: cmd, stderr: &stderr}
	e.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}
		if e.t.Failed() {
			e.t.Logf("%s stderr:\n%s", name, tail(stderr.String()))
		}
	})
	return p
}

func tail(s string) string {
	if len(s) > 4000 {
		return s[len(s)-4000:]
	}
	return s
}

// startSim starts the simulator on listen and returns its base URL.
func (e *env) startSim(listen string, faults ...string) (*proc, string) {
	e.t.Helper()
	if slices.Contains(faults, "--garbage-rate") {
		e.garbage.Store(true) // malformed answers on purpose: not checked
	}
	args := append([]string{"register-sim", "--listen", listen, "--db", filepath.Join(e.dir, "sim.db")}, faults...)
	p := e.start("register-sim", args...)
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		e.t.Fatalf("register-sim did not start: %v\n%s", err, p.stderr)
	}
	url := strings.TrimSpace(strings.TrimPrefix(line, "register-sim listening on "))
	return p, url
}

// startWorker starts `tacline register deliver` against url, through a
// proxy that checks every exchange against register/openapi.yaml.
func (e *env) startWorker(url string, extra ...string) *proc {
	e.t.Helper()
	url = registertest.CheckingProxy(e.t, url, e.garbage.Load).URL
	args := append([]string{"register", "deliver", "--db-driver", string(e.cfg.Driver), "--dsn", e.cfg.DSN, "--url", url,
		"--batch-size", "10", "--batch-age", "10ms", "--poll", "20ms", "--timeout", "2s", "--lease", "3s",
		"--backoff-initial", "20ms", "--backoff-max", "300ms", "--breaker-failures", "3", "--breaker-cooldown", "300ms"}, extra...)
	p := e.start("register deliver", args...)
	if err := p.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *env) status() register.Report {
	e.t.Helper()
	r, err := register.Status(context.Background(), e.db)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// waitFor polls cond until it holds; the deadline only bounds a hung run.
func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("gave up waiting for %s; outbox %+v", what, e.status())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *env) drained() bool {
	r := e.status()
	return r.Pending == 0
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// checkExactlyOnce compares the outbox with what the simulator applied:
// every outbox row acknowledged, applied once under its key, and the
// events of each IMEI applied in outbox order.
func (e *env) checkExactlyOnce(url string) {
	e.t.Helper()
	type row struct{ key, event string }
	var want []row
	rows, err := storetest.Reader(e.db).Query(`SELECT idempotency_key, event, state, imei14 FROM register_outbox ORDER BY id`)
	if err != nil {
		e.t.Fatal(err)
	}
	perIMEI := map[string][]string{}
	for rows.Next() {
		var key, event, state string
		var n uint64
		if err := rows.Scan(&key, &event, &state, &n); err != nil {
			e.t.Fatal(err)
		}
		if state != register.StateAcknowledged {
			e.t.Errorf("outbox row %s is %s", key, state)
		}
		m, _ := imei.FromUint64(n)
		perIMEI[m.Digits14()] = append(perIMEI[m.Digits14()], key)
		want = append(want, row{key, event})
	}
	rows.Close()
	got := registertest.Applied(e.t, url)
	seen := map[string]int{}
	order := map[string][]string{}
	for _, a := range got {
		seen[a.IdempotencyKey]++
		order[a.IMEI14] = append(order[a.IMEI14], a.IdempotencyKey)
	}
	for _, w := range want {
		if seen[w.key] != 1 {
			e.t.Errorf("event %s (%s) applied %d times", w.key, w.event, seen[w.key])
		}
	}
	if len(got) != len(want) {
		e.t.Errorf("simulator applied %d events, outbox holds %d", len(got), len(want))
	}
	for im, keys := range perIMEI {
		if strings.Join(order[im], ",") != strings.Join(keys, ",") {
			e.t.Errorf("IMEI %s: applied in order %v, ledger order %v", im, order[im], keys)
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestRegisterDownThenBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 80)
	addr := freeAddr(t)
	e.bindAll(0, 40)
	e.startWorker("http://" + addr)
	// The register is down: the worker fails, backs off, the outbox grows.
	e.waitFor("a delivery error", func() bool { return e.status().LastError != "" })
	e.bindAll(40, 80)
	for s := uint32(0); s < 10; s++ {
		e.transition(s, "REVOKED", store.EventIMEIRevoked)
	}
	if r := e.status(); r.Pending != 90 || r.Counts[register.StateAcknowledged] != 0 {
		t.Fatalf("while the register is down: %+v", r)
	}
	_, url := e.startSim(addr)
	e.waitFor("the outbox to drain", e.drained)
	e.checkExactlyOnce(url)
	var s sim.Stats
	getJSON(t, url+"/admin/stats", &s)
	if s.Applied != 90 || s.Items["conflict"] != 0 || s.Items["invalid"] != 0 {
		t.Fatalf("simulator stats %+v", s)
	}
	// The regulator's view: the simulator's DIRBS list reconciles with the
	// ledger (70 bound and registered, 10 revoked and removed there).
	got := e.reconcile(url)
	want := reconcile.Summary{Matched: 70, RegisterRows: 70, LedgerIMEIs: 80, TACs: 1}
	if got != want {
		t.Fatalf("reconcile --json = %+v, want %+v", got, want)
	}
}

// reconcile runs `tacline reconcile` on the simulator's DIRBS list.
func (e *env) reconcile(url string) reconcile.Summary {
	e.t.Helper()
	resp, err := http.Get(url + "/v1/registration-list.csv")
	if err != nil {
		e.t.Fatal(err)
	}
	list, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		e.t.Fatal(err)
	}
	path := filepath.Join(e.dir, "register.csv")
	if err := os.WriteFile(path, list, 0o644); err != nil {
		e.t.Fatal(err)
	}
	out, err := exec.Command(bin, "reconcile", "--db-driver", string(e.cfg.Driver), "--dsn", e.cfg.DSN, "--register", path,
		"--format", "dirbs", "--out", filepath.Join(e.dir, "reconcile"), "--json").Output()
	if err != nil {
		e.t.Fatalf("tacline reconcile: %v", err)
	}
	var sum reconcile.Summary
	if err := json.Unmarshal(out, &sum); err != nil {
		e.t.Fatalf("reconcile output %q: %v", out, err)
	}
	return sum
}

func TestFaultsAppliedExactlyOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 150)
	_, url := e.startSim("127.0.0.1:0", "--fail-rate", "0.3", "--drop-rate", "0.2", "--latency", "5ms")
	// Small batches: 40+ requests, so that some are surely failed and
	// dropped (the chance of no drop at all is below 1e-4).
	e.startWorker(url, "--batch-size", "4")
	e.bindAll(0, 150)
	for s := uint32(0); s < 20; s++ {
		e.transition(s, "VOIDED", store.EventIMEIVoided)
	}
	e.waitFor("the outbox to drain", e.drained)
	e.checkExactlyOnce(url)
	var s sim.Stats
	getJSON(t, url+"/admin/stats", &s)
	if s.Applied != 170 || s.Requests["failed"] == 0 || s.Requests["dropped"] == 0 || s.Items["duplicate"] == 0 {
		t.Fatalf("simulator stats %+v: faults not exercised or events lost", s)
	}
	if s.Items["accepted"] != 170 {
		t.Fatalf("accepted %d items for 170 events", s.Items["accepted"])
	}
}

func TestWorkerKilledMidDelivery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 200)
	_, url := e.startSim("127.0.0.1:0", "--latency", "100ms")
	e.bindAll(0, 200)
	w := e.startWorker(url)
	e.waitFor("some acknowledgements", func() bool { return e.status().Counts[register.StateAcknowledged] >= 30 })
	if err := w.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	w.cmd.Wait()
	r := e.status()
	if r.Pending == 0 {
		t.Fatalf("the worker finished before it was killed: %+v", r)
	}
	e.startWorker(url)
	e.waitFor("the outbox to drain", e.drained)
	e.checkExactlyOnce(url)
}

func TestGarbageRepliesKeepBatchPending(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 20)
	_, url := e.startSim("127.0.0.1:0", "--garbage-rate", "1")
	e.bindAll(0, 20)
	w := e.startWorker(url)
	e.waitFor("a malformed-reply error", func() bool {
		return strings.Contains(e.status().LastError, "malformed reply")
	})
	if r := e.status(); r.Pending != 20 || r.Counts[register.StateAcknowledged] != 0 {
		t.Fatalf("status %+v", r)
	}
	if w.cmd.ProcessState != nil {
		t.Fatalf("worker exited: %v", w.cmd.ProcessState)
	}
	req, _ := http.NewRequest(http.MethodPut, url+"/admin/faults", strings.NewReader(`{"garbage_rate":0}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	e.waitFor("the outbox to drain", e.drained)
	e.checkExactlyOnce(url)
}

func TestReplicaKilledOnPostgres(t *testing.T) {
	t.Parallel()
	e := newEnvAt(t, t.TempDir(), storetest.Config(t, store.Postgres), 300)
	_, url := e.startSim("127.0.0.1:0", "--latency", "50ms")
	e.bindAll(0, 300)
	a := e.startWorker(url)
	e.startWorker(url)
	e.waitFor("some acknowledgements", func() bool { return e.status().Counts[register.StateAcknowledged] >= 60 })
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a.cmd.Wait()
	if r := e.status(); r.Pending == 0 {
		t.Fatalf("delivery finished before a replica was killed: %+v", r)
	}
	e.waitFor("the outbox to drain", e.drained)
	e.checkExactlyOnce(url)
}
