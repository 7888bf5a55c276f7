package test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/factory/sim"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// Shape of an outage run: a short simulated line with a 10-second outage of
// one dependency in its middle.
const (
	outageStations = 4
	outageDevices  = 60 // per station: 240 devices in all
	outageRate     = 16 // devices per second over all stations: a 15-second line
	outageStart    = 3 * time.Second
	outageLength   = 10 * time.Second
	outageDeadline = 3 * time.Minute // for one run, everything included
)

// TestOutage is issue 11's honest-failure test: a real server and a real
// `tacline station simulate` process; 3 seconds into the line its ledger
// database (PostgreSQL: closed to connections and its backends terminated;
// SQLite: the database file and WAL made immutable) or its HSM (the
// SoftHSM2 token directory moved away) is lost for 10 seconds, then comes
// back. The stations see retryable 503s (never 401, 403 or 500), retry with
// the same request ids within their budget, and the line ends with every
// device provisioned and verified, and `tacline ledger check` OK.
func TestOutage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		driver store.Dialect
		what   string // "database" or "hsm"
	}{
		{name: "postgres database", driver: store.Postgres, what: "database"},
		{name: "sqlite database", driver: store.SQLite, what: "database"},
		{name: "hsm", driver: store.SQLite, what: "hsm"},
	} {
		t.Run(tc.name, func(t *testing.T) { runOutage(t, tc.driver, tc.what) })
	}
}

func runOutage(t *testing.T, driver store.Dialect, what string) {
	ctx, cancel := context.WithTimeout(context.Background(), outageDeadline)
	defer cancel()
	env := setupEnv(t, ctx, driver, outageStations)
	logPath := filepath.Join(env.Dir, "server.log")
	proc, err := devenv.StartServer(ctx, taclineBin, env.ConfigPath, logPath)
	if err != nil {
		t.Fatalf("start the server: %v", err)
	}
	t.Cleanup(func() {
		proc.Kill()
		if t.Failed() {
			logTail(t, logPath, 60)
		}
	})

	// The simulated line, a process of its own.
	cmd := exec.CommandContext(ctx, taclineBin, "station", "simulate", "--server", proc.URL, "--creds", env.CredsDir,
		"--devices", strconv.Itoa(outageDevices), "--rate", strconv.Itoa(outageRate), "--json", "--run-id", "OUT")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	simDone := make(chan error, 1)
	go func() { simDone <- cmd.Wait() }()

	// The outage, in the middle of the line.
	select {
	case err := <-simDone:
		t.Fatalf("the line ended before the outage (%v)\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	case <-time.After(outageStart):
	}
	restore := startOutage(t, env, driver, what)
	sleepCtx(ctx, outageLength)
	restore()

	var simErr error
	select {
	case simErr = <-simDone:
	case <-ctx.Done():
		t.Fatalf("the line did not end within %s", outageDeadline)
	}
	var sum sim.Summary
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		t.Fatalf("station simulate printed no summary (%v, exit %v)\nstdout:\n%s\nstderr:\n%s", err, simErr, stdout.String(), stderr.String())
	}
	t.Logf("%s outage: %d devices, %d failed, %d retries, errors %v, p99 %.0f ms, max %.0f ms",
		what, sum.Devices, sum.Failed, sum.Retries, sum.ErrorsByCode, sum.P99ms, sum.MaxMs)
	if simErr != nil || sum.Failed != 0 || sum.Devices != outageStations*outageDevices {
		t.Fatalf("station simulate: exit %v, %d devices, %d failed (errors %v), want %d devices and none failed\nstderr:\n%s",
			simErr, sum.Devices, sum.Failed, sum.ErrorsByCode, outageStations*outageDevices, stderr.String())
	}
	if sum.Retries == 0 {
		t.Fatalf("no request was retried: the outage did not reach the stations")
	}
	if err := proc.Stop(30 * time.Second); err != nil {
		t.Fatalf("the server did not stop cleanly: %v", err)
	}
	res := tacline(t, time.Minute, "--config", env.ConfigPath, "ledger", "check")
	if res.code != 0 || !strings.Contains(res.stdout, "ledger OK") {
		t.Fatalf("tacline ledger check exited %d\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	checkOutageLog(t, logPath, what)
}

// startOutage cuts the server off what and returns the function that ends
// the outage.
func startOutage(t *testing.T, env *devenv.Env, driver store.Dialect, what string) (restore func()) {
	t.Helper()
	if what == "hsm" {
		// As the hsm package's recovery tests do: the token directory goes
		// away under the running server and comes back.
		tokens := filepath.Join(env.Dir, "hsm", "tokens")
		away := tokens + ".away"
		if err := os.Rename(tokens, away); err != nil {
			t.Fatal(err)
		}
		done := false
		restore = func() {
			if !done {
				done = true
				if err := os.Rename(away, tokens); err != nil {
					t.Errorf("put the token directory back: %v", err)
				}
			}
		}
		t.Cleanup(restore)
		return restore
	}
	dsn := env.Config.Database.DSN
	if driver == store.Postgres {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatal(err)
		}
		return storetest.PostgresOutage(t, strings.TrimPrefix(u.Path, "/"))
	}
	if !filepath.IsAbs(dsn) {
		dsn = filepath.Join(filepath.Dir(env.ConfigPath), dsn)
	}
	return storetest.SQLiteOutage(t, dsn)
}

// checkOutageLog requires that the server met the outage (it logged failed
// requests) and answered them as retryable 503s, never 401, 403 or 500.
func checkOutageLog(t *testing.T, logPath, what string) {
	t.Helper()
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, line := range strings.Split(string(data), "\n") {
		var rec struct {
			Msg    string `json:"msg"`
			Status int    `json:"status"`
			Code   string `json:"code"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Msg != "http" || rec.Status < 400 {
			continue
		}
		failed++
		switch rec.Status {
		case 401, 403, 500:
			t.Errorf("during the %s outage the server answered %d %s:\n%s", what, rec.Status, rec.Code, line)
		}
	}
	if failed == 0 {
		t.Errorf("the server log shows no failed request: the %s outage did not reach the server", what)
	}
}
