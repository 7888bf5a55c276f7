package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/factory/sim"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// Shape of the replicas run: three servers on one PostgreSQL ledger, six
// stations of one product (so one pool: every replica claims SNRs from the
// same pool row), two per replica, each station provisioning as fast as
// its replica answers.
const (
	replicaServers  = 3
	replicaStations = 6
	replicaDevices  = 40 // per station: 240 devices in all
)

// TestReplicasShareOnePostgres is issue 14's scale-out correctness test:
// three `tacline serve` processes on one PostgreSQL database, and three
// `tacline station simulate` processes, each driving its share of the
// stations against its own replica at once. Every device must be
// provisioned and verified by its station, no IMEI and no device serial
// may appear twice across the three lines, the ledger must hold exactly the
// devices the stations received, and `tacline ledger check` must pass.
// (Speed is `tacline bench provision --replicas 3`'s, not this test's.)
func TestReplicasShareOnePostgres(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	env := setupEnv(t, ctx, store.Postgres, replicaStations)
	creds, err := factory.LoadCreds(env.CredsDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(creds.Stations) != replicaStations {
		t.Fatalf("the environment has %d stations, want %d", len(creds.Stations), replicaStations)
	}

	var procs []*devenv.Proc
	for i := 0; i < replicaServers; i++ {
		logPath := filepath.Join(env.Dir, fmt.Sprintf("server-%d.log", i+1))
		p, err := devenv.StartServer(ctx, taclineBin, env.ConfigPath, logPath)
		if err != nil {
			t.Fatalf("start replica %d: %v", i+1, err)
		}
		procs = append(procs, p)
		t.Cleanup(func() {
			p.Kill()
			if t.Failed() {
				logTail(t, logPath, 40)
			}
		})
	}

	// One line per replica, all at once, each a process of its own with
	// its share of the stations (stations i, i+3).
	type line struct {
		cmd            *exec.Cmd
		stdout, stderr bytes.Buffer
		devicesOut     string
		stations       int
	}
	lines := make([]*line, replicaServers)
	for i, p := range procs {
		dir := filepath.Join(env.Dir, fmt.Sprintf("creds-%d", i+1))
		l := &line{devicesOut: filepath.Join(env.Dir, fmt.Sprintf("devices-%d.ndjson", i+1))}
		for j := i; j < len(creds.Stations); j += replicaServers {
			copyStation(t, env.CredsDir, dir, creds.Stations[j].ID)
			l.stations++
		}
		for _, f := range []string{factory.CredsRootsFile, factory.CredsServerCAFile} {
			if err := os.Symlink(filepath.Join(env.CredsDir, f), filepath.Join(dir, f)); err != nil {
				t.Fatal(err)
			}
		}
		l.cmd = exec.CommandContext(ctx, taclineBin, "station", "simulate", "--server", p.URL, "--creds", dir,
			"--devices", strconv.Itoa(replicaDevices), "--devices-out", l.devicesOut, "--json", "--run-id", fmt.Sprintf("REP%d", i+1))
		l.cmd.Stdout, l.cmd.Stderr = &l.stdout, &l.stderr
		if err := l.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines[i] = l
	}

	imeiOwner := map[string]string{} // IMEI -> device serial, over all lines
	serials := map[string]bool{}
	total := 0
	for i, l := range lines {
		err := l.cmd.Wait()
		var sum sim.Summary
		if jerr := json.Unmarshal(l.stdout.Bytes(), &sum); jerr != nil || err != nil {
			t.Fatalf("line %d (replica %d): exit %v, summary %v\nstdout:\n%s\nstderr:\n%s", i+1, i+1, err, jerr, l.stdout.String(), l.stderr.String())
		}
		want := l.stations * replicaDevices
		if sum.Devices != want || sum.Failed != 0 {
			t.Fatalf("line %d (replica %d): %d devices verified, %d failed (errors %v), want %d and none failed",
				i+1, i+1, sum.Devices, sum.Failed, sum.ErrorsByCode, want)
		}
		devs := readDevicesOut(t, l.devicesOut)
		if len(devs) != want {
			t.Fatalf("line %d wrote %d devices to %s, want %d", i+1, len(devs), l.devicesOut, want)
		}
		for _, d := range devs {
			if serials[d.DeviceSerial] {
				t.Fatalf("device %s provisioned twice", d.DeviceSerial)
			}
			serials[d.DeviceSerial] = true
			if len(d.IMEIs) == 0 {
				t.Fatalf("device %s got no IMEI", d.DeviceSerial)
			}
			for _, m := range d.IMEIs {
				if other, dup := imeiOwner[m]; dup {
					t.Fatalf("IMEI %s handed to two devices: %s and %s", m, other, d.DeviceSerial)
				}
				imeiOwner[m] = d.DeviceSerial
			}
		}
		total += want
		t.Logf("replica %d: %d devices, p99 %.0f ms, %d retries", i+1, sum.Devices, sum.P99ms, sum.Retries)
	}

	for i, p := range procs {
		if err := p.Stop(30 * time.Second); err != nil {
			t.Fatalf("replica %d did not stop cleanly: %v", i+1, err)
		}
	}
	// Each replica logs at shutdown how its audit appends found the head:
	// every replica appended (it bound devices), guessing the head it
	// committed last or reading it under the lock after another replica.
	for i := range procs {
		st := shutdownStats(t, filepath.Join(env.Dir, fmt.Sprintf("server-%d.log", i+1)))
		if st.Guessed+st.Locked < 1 || st.Batches < 1 {
			t.Fatalf("replica %d's shutdown line reports %+v: want its batches and audit appends", i+1, st)
		}
		t.Logf("replica %d: %d ledger batches, audit appends %d guessed, %d under the lock", i+1, st.Batches, st.Guessed, st.Locked)
	}
	// The ledger holds exactly what the stations received: as many bound
	// IMEIs and devices, each IMEI bound to the device it was given to.
	db, err := store.Open(ctx, env.Config.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var bound, devices int
	r := storetest.Reader(db)
	if err := r.GetContext(ctx, &bound, `SELECT count(*) FROM imeis WHERE state = 'BOUND'`); err != nil {
		t.Fatal(err)
	}
	if err := r.GetContext(ctx, &devices, `SELECT count(*) FROM devices`); err != nil {
		t.Fatal(err)
	}
	if bound != len(imeiOwner) || devices != total {
		t.Fatalf("ledger: %d bound IMEIs and %d devices, the stations received %d IMEIs on %d devices", bound, devices, len(imeiOwner), total)
	}
	some := make([]string, 0, len(serials))
	for s := range serials {
		some = append(some, s)
	}
	sort.Strings(some)
	for _, s := range some[:5] {
		recs, err := db.DeviceIMEIs(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs {
			if imeiOwner[rec.IMEI.String()] != s {
				t.Fatalf("ledger binds IMEI %s to %s, the station gave it to %q", rec.IMEI, s, imeiOwner[rec.IMEI.String()])
			}
		}
	}
	res := tacline(t, time.Minute, "--config", env.ConfigPath, "ledger", "check")
	if res.code != 0 || !strings.Contains(res.stdout, "ledger OK") {
		t.Fatalf("tacline ledger check exited %d\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
}

// copyStation copies a station's credentials directory src/id to dst/id.
func copyStation(t *testing.T, src, dst, id string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dst, id), 0o700); err != nil {
		t.Fatal(err)
	}
	files, err := os.ReadDir(filepath.Join(src, id))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(src, id, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, id, f.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// serveStats is what `tacline serve` logs when it shuts down.
type serveStats struct {
	Batches int64 `json:"ledger_batches"`
	Guessed int64 `json:"audit_appends_guessed"`
	Locked  int64 `json:"audit_appends_locked"`
}

// shutdownStats reads the "tacline shutting down" line of a server's JSON
// log.
func shutdownStats(t *testing.T, logPath string) serveStats {
	t.Helper()
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		var l struct {
			Msg string `json:"msg"`
			serveStats
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "tacline shutting down" {
			return l.serveStats
		}
	}
	t.Fatalf("%s has no shutdown line", logPath)
	return serveStats{}
}

type deviceOut struct {
	DeviceSerial string   `json:"device_serial"`
	IMEIs        []string `json:"imeis"`
}

// readDevicesOut reads a --devices-out file (one JSON object per line).
func readDevicesOut(t *testing.T, path string) []deviceOut {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []deviceOut
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var d deviceOut
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, d)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
