package test

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// Shape of a crash run: bounded so that one database takes well under a
// minute on a 2-core machine.
const (
	crashStations  = 4
	crashKills     = 25                     // SIGKILLs per database (the issue asks for at least 20)
	crashMaxUptime = time.Second            // a kill comes a random time up to this after the server is ready
	crashMaxDown   = 100 * time.Millisecond // and the restart a random time up to this after the kill
	crashDropP     = 0.25                   // chance a station gives up a request whose attempt failed
	crashThink     = 10 * time.Millisecond  // a station waits up to this between two devices
	// After a kill, with this chance a server is first started and killed
	// again during its start-up (ledger, migrations, HSM login, recovery),
	// a random time up to crashMaxStartup into it.
	crashStartupKillP = 0.2
	crashMaxStartup   = 500 * time.Millisecond
	crashDeadline     = 150 * time.Second // for one database, everything included
)

// sqlCountReserved counts IMEIs still RESERVED (recovery has not run yet).
const sqlCountReserved = `SELECT COUNT(*) FROM imeis WHERE state = 'RESERVED'`

// TestCrash is the crash test of issue 4: the real server, SIGKILLed at
// random moments while concurrent stations provision, restarted on a new
// port each time; then the ledger is judged (see checkLedger), and a server
// with a short intent timeout voids what unanswered requests left.
func TestCrash(t *testing.T) {
	seed := crashSeed(t)
	for _, tc := range []struct {
		name   string
		driver store.Dialect
	}{
		{name: "sqlite", driver: store.SQLite},
		{name: "postgres", driver: store.Postgres},
	} {
		t.Run(tc.name, func(t *testing.T) { runCrash(t, tc.driver, seed) })
	}
}

// crashSeed is TACLINE_CRASH_SEED if set (to replay a run), else random.
func crashSeed(t *testing.T) uint64 {
	if v := os.Getenv("TACLINE_CRASH_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("TACLINE_CRASH_SEED=%q: want an unsigned decimal number: %v", v, err)
		}
		t.Logf("crash seed %d (from TACLINE_CRASH_SEED)", s)
		return s
	}
	s := rand.Uint64()
	t.Logf("crash seed %d (replay with TACLINE_CRASH_SEED=%d)", s, s)
	return s
}

// crashRun is one database's run: the environment and the server process.
type crashRun struct {
	t       *testing.T
	ctx     context.Context
	env     *devenv.Env
	logPath string
	proc    *devenv.Proc
	ref     *serverRef
}

func (r *crashRun) start() {
	r.t.Helper()
	p, err := devenv.StartServer(r.ctx, taclineBin, r.env.ConfigPath, r.logPath)
	if err != nil {
		r.t.Fatalf("start the server: %v", err)
	}
	r.proc = p
	r.ref.set(p.URL)
}

// killDuringStartup starts `tacline serve` and SIGKILLs it d into its
// start-up; the stations never learn its port.
func (r *crashRun) killDuringStartup(d time.Duration) {
	r.t.Helper()
	logf, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		r.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(taclineBin, "serve", "--config", r.env.ConfigPath, "--listen", "127.0.0.1:0")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("start tacline serve: %v", err)
	}
	sleepCtx(r.ctx, d)
	_ = cmd.Process.Kill() // it may have failed on its own: the next start tells
	_ = cmd.Wait()
}

// stop shuts the server down cleanly and requires a clean exit.
func (r *crashRun) stop() {
	r.t.Helper()
	p := r.proc
	r.proc = nil
	if err := p.Stop(30 * time.Second); err != nil {
		r.t.Fatalf("the server did not stop cleanly: %v", err)
	}
}

// ledgerCheck runs `tacline ledger check` and requires exit status 0.
func (r *crashRun) ledgerCheck() {
	r.t.Helper()
	res := tacline(r.t, time.Minute, "--config", r.env.ConfigPath, "ledger", "check")
	if res.code != 0 || !strings.Contains(res.stdout, "ledger OK") {
		r.t.Fatalf("tacline ledger check exited %d\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
}

func runCrash(t *testing.T, driver store.Dialect, seed uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), crashDeadline)
	defer cancel()
	env := setupEnv(t, ctx, driver, crashStations)
	r := &crashRun{t: t, ctx: ctx, env: env, logPath: filepath.Join(env.Dir, "server.log"), ref: &serverRef{}}
	t.Cleanup(func() {
		if r.proc != nil {
			r.proc.Kill()
		}
		if t.Failed() {
			logTail(t, r.logPath, 60)
		}
	})
	r.start()

	creds, err := factory.LoadCreds(env.CredsDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := loadRoots(creds.RootsFile)
	if err != nil {
		t.Fatal(err)
	}
	journals := filepath.Join(env.Dir, "journals")
	if err := os.MkdirAll(journals, 0o755); err != nil {
		t.Fatal(err)
	}
	var stations []*station
	for i, sc := range creds.Stations {
		stations = append(stations, newStation(sc, journals, creds.ServerCAFile, roots, seed, i, crashDropP, crashThink))
	}

	// Phase 1: provision under random SIGKILLs.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range stations {
		wg.Go(func() { s.run(ctx, r.ref, stop) })
	}
	rng := rand.New(rand.NewPCG(seed, 1<<32))
	kills, startupKills := 0, 0
	for ; kills < crashKills && ctx.Err() == nil; kills++ {
		sleepCtx(ctx, time.Duration(rng.Int64N(int64(crashMaxUptime))))
		r.proc.Kill()
		r.proc = nil
		sleepCtx(ctx, time.Duration(rng.Int64N(int64(crashMaxDown))))
		if rng.Float64() < crashStartupKillP {
			r.killDuringStartup(time.Duration(rng.Int64N(int64(crashMaxStartup))))
			startupKills++
		}
		if ctx.Err() != nil {
			break
		}
		r.start()
	}
	close(stop) // stations now finish their pending request, never giving it up
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("the crash run did not finish within %s (%d kills)", crashDeadline, kills)
	}
	requireNoFailures(t, stations)
	st := statsOf(stations)
	t.Logf("%s: %d kills of a serving server and %d during start-up; %d devices answered (%d after a failed attempt), %d requests given up, %d retried attempts",
		driver, kills, startupKills, st.answered, st.afterFailure, st.dropped, st.retries)
	if kills < 20 || st.answered == 0 || st.afterFailure == 0 {
		t.Fatalf("the run did too little to prove anything: %d kills, %d answers, %d of them after a failed attempt", kills, st.answered, st.afterFailure)
	}

	// Phase 2: answers are stable; a reused request id with another body is refused.
	checkReplays(t, ctx, r.ref, creds, stations, rng)
	r.stop()
	r.ledgerCheck()
	db, err := store.Open(ctx, env.Config.Database)
	if err != nil {
		t.Fatalf("open the ledger: %v", err)
	}
	defer db.Close()
	snap := readLedger(t, ctx, db)
	left, violations := checkLedger(snap, stations)
	requireNone(t, violations)
	checkCheckerCatches(t, snap, stations)
	t.Logf("%s: leftovers of unanswered requests: %d requests, %d RESERVED IMEIs", driver, len(left.requests), len(left.imeis))

	// Phase 3: a server with a 1s intent timeout voids the leftovers as
	// abandoned; then (back on the normal timeout, so that recovery cannot
	// race a slow request) new devices get other IMEIs.
	restore := shortenIntentTimeout(t, env.ConfigPath)
	r.start()
	waitRecovered(t, ctx, db)
	if len(left.requests) > 0 {
		checkAbandonedReplay(t, ctx, r.ref, creds, stations, left)
	} else {
		t.Logf("%s: no request was given up between intent and completion; recovery had nothing to void", driver)
	}
	r.stop()
	restore()
	r.start()
	for _, s := range stations {
		s.dropP, s.max = 0, s.made+2
		wg.Go(func() { s.run(ctx, r.ref, make(chan struct{})) })
	}
	wg.Wait()
	requireNoFailures(t, stations)
	r.stop()
	r.ledgerCheck()
	final := readLedger(t, ctx, db)
	after, violations := checkLedger(final, stations)
	requireNone(t, violations)
	if len(after.requests) != 0 {
		t.Fatalf("after recovery %d requests still hold RESERVED IMEIs or pending intents", len(after.requests))
	}
	for id := range left.requests {
		if is := final.issuances[id]; is == nil || is.State != store.IssuanceAbandoned {
			t.Errorf("leftover request %s after recovery: intent %+v, want abandoned", id, is)
		}
	}
	for _, m := range left.imeis {
		if row := final.byIMEI[m]; row == nil || row.State != store.StateVoided || row.Reason != "abandoned" {
			t.Errorf("leftover IMEI %s after recovery: %+v, want VOIDED (abandoned)", m, row)
		}
	}
	for _, s := range stations {
		for _, a := range s.answered[len(s.answered)-2:] {
			for _, v := range a.resp.IMEIs {
				m, _ := imei.Parse(v)
				if row := final.byIMEI[m]; row == nil || row.RequestID != a.req.RequestID {
					t.Errorf("IMEI %s given to device %s after recovery is not that request's own row: %+v", v, a.req.DeviceSerial, row)
				}
			}
		}
	}
}

// checkReplays resends answered requests (same id, same body) and wants the
// same answer, and reuses an id with another body and wants request_conflict.
func checkReplays(t *testing.T, ctx context.Context, ref *serverRef, creds *factory.Creds, stations []*station, rng *rand.Rand) {
	t.Helper()
	url, _ := ref.get()
	for i, s := range stations {
		if len(s.answered) == 0 {
			continue
		}
		c, err := factory.NewClient(factory.ClientConfig{ServerURL: url, CertFile: creds.Stations[i].CertFile, KeyFile: creds.Stations[i].KeyFile, CAFile: creds.ServerCAFile})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		a := s.answered[rng.IntN(len(s.answered))]
		got, err := c.Provision(ctx, a.req)
		if err != nil {
			t.Fatalf("replay of request %s: %v", a.req.RequestID, err)
		}
		if strings.Join(got.IMEIs, ",") != strings.Join(a.resp.IMEIs, ",") || got.CertificateSerial != a.resp.CertificateSerial || got.Certificate != a.resp.Certificate {
			t.Errorf("replay of request %s answered IMEIs %v certificate %s, first answer IMEIs %v certificate %s",
				a.req.RequestID, got.IMEIs, got.CertificateSerial, a.resp.IMEIs, a.resp.CertificateSerial)
		}
		other := a.req
		other.DeviceSerial += "-X"
		_, err = c.Provision(ctx, other)
		var ae *factory.APIError
		if !errors.As(err, &ae) || ae.Problem.Code != string(tacerr.RequestConflict) || ae.Status != 409 {
			t.Errorf("request id %s reused with another body: got %v, want 409 request_conflict", a.req.RequestID, err)
		}
	}
}

// checkAbandonedReplay resends a request whose IMEIs recovery voided: the
// server must refuse it (invalid_state), not complete it or reuse them.
func checkAbandonedReplay(t *testing.T, ctx context.Context, ref *serverRef, creds *factory.Creds, stations []*station, left leftovers) {
	t.Helper()
	url, _ := ref.get()
	for i, s := range stations {
		for _, p := range s.dropped {
			if !left.requests[p.req.RequestID] {
				continue
			}
			c, err := factory.NewClient(factory.ClientConfig{ServerURL: url, CertFile: creds.Stations[i].CertFile, KeyFile: creds.Stations[i].KeyFile, CAFile: creds.ServerCAFile})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			resp, err := c.Provision(ctx, p.req)
			if err == nil {
				t.Fatalf("abandoned request %s was answered after recovery with IMEIs %v", p.req.RequestID, resp.IMEIs)
			}
			if code := factory.ErrorCode(err); code != string(tacerr.InvalidState) {
				t.Fatalf("abandoned request %s replayed: %v (code %s), want invalid_state", p.req.RequestID, err, code)
			}
			return
		}
	}
	t.Fatalf("no station gave up one of the leftover requests %v", left.requests)
}

// shortenIntentTimeout rewrites the environment's configuration with the
// shortest intent timeout and recovery interval the configuration allows;
// the function it returns puts the original configuration back.
func shortenIntentTimeout(t *testing.T, path string) (restore func()) {
	t.Helper()
	data := setProvisioning(t, path, map[string]string{"intent_timeout": "1s", "recovery_interval": "1s"})
	return func() {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// setProvisioning sets keys of the provisioning section of the
// configuration file at path and returns the file's earlier content.
func setProvisioning(t *testing.T, path string, kv map[string]string) []byte {
	t.Helper()
	return editConfig(t, path, func(doc map[string]any) {
		prov, _ := doc["provisioning"].(map[string]any)
		if prov == nil {
			prov = map[string]any{}
			doc["provisioning"] = prov
		}
		for k, v := range kv {
			prov[k] = v
		}
	})
}

// editConfig rewrites the configuration file at path through edit and
// returns the file's earlier content.
func editConfig(t *testing.T, path string, edit func(doc map[string]any)) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	edit(doc)
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return data
}

// waitRecovered waits until the server's recovery loop has left no
// RESERVED IMEI and no pending intent.
func waitRecovered(t *testing.T, ctx context.Context, db *store.DB) {
	t.Helper()
	r := storetest.Reader(db)
	for {
		var reserved int
		if err := r.GetContext(ctx, &reserved, r.Rebind(sqlCountReserved)); err != nil {
			t.Fatalf("count RESERVED IMEIs: %v", err)
		}
		pend, err := db.PendingIssuances(ctx, time.Now().Add(time.Hour), nil, 1)
		if err != nil {
			t.Fatalf("list pending intents: %v", err)
		}
		if reserved == 0 && len(pend) == 0 {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("recovery left %d RESERVED IMEIs and %d+ pending intents", reserved, len(pend))
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
}

func requireNoFailures(t *testing.T, stations []*station) {
	t.Helper()
	n := 0
	for _, s := range stations {
		for _, f := range s.failures {
			n++
			t.Errorf("station %s: %s", s.creds.ID, f)
		}
	}
	if n > 0 {
		t.FailNow()
	}
}

type crashStats struct{ answered, afterFailure, dropped, retries int }

func statsOf(stations []*station) crashStats {
	var st crashStats
	for _, s := range stations {
		st.answered += len(s.answered)
		for _, a := range s.answered {
			if a.afterFailure {
				st.afterFailure++
			}
		}
		st.dropped += len(s.dropped)
		st.retries += s.retries
	}
	return st
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// logTail prints the end of the server log of a failed run.
func logTail(t *testing.T, path string, n int) {
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	t.Logf("last %d lines of %s:\n%s", len(lines), path, strings.Join(lines, "\n"))
}
