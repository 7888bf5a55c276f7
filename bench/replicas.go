package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/factory/sim"
	"github.com/tacline/tacline/store/pgadmin"
)

// replicas are `tacline serve` processes on one ledger (several only on
// PostgreSQL), each on its own loopback port, as several replicas behind a
// load balancer would be; the stations are spread over them.
type replicas []*devenv.Proc

// startReplicas starts n servers with the environment's configuration. The
// first logs to server.log (and writes the CPU and allocation profiles, if
// asked), the others to server-2.log, server-3.log... procs, when > 0, is
// each server's GOMAXPROCS.
func startReplicas(ctx context.Context, bin string, env *devenv.Env, n, procs int, cpuProfile, memProfile string) (replicas, error) {
	var rs replicas
	var environ []string
	if procs > 0 {
		environ = []string{fmt.Sprintf("GOMAXPROCS=%d", procs)}
	}
	for i := 0; i < max(n, 1); i++ {
		log := filepath.Join(env.Dir, "server.log")
		var extra []string
		if i > 0 {
			log = filepath.Join(env.Dir, fmt.Sprintf("server-%d.log", i+1))
		} else {
			if cpuProfile != "" {
				extra = append(extra, "--cpuprofile", cpuProfile)
			}
			if memProfile != "" {
				extra = append(extra, "--memprofile", memProfile)
			}
		}
		p, err := devenv.StartServerEnv(ctx, bin, env.ConfigPath, log, environ, extra...)
		if err != nil {
			rs.kill()
			return nil, fmt.Errorf("replica %d: %w", i+1, err)
		}
		rs = append(rs, p)
	}
	return rs, nil
}

func (rs replicas) kill() {
	for _, p := range rs {
		p.Kill()
	}
}

// stop stops every replica in order (SIGTERM, then the grace period).
func (rs replicas) stop(grace time.Duration) error {
	var first error
	for _, p := range rs {
		if err := p.Stop(grace); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// load drives the replicas at once for d: station credentials i, i+n,
// i+2n... and their share of the workers and of the offered rate go to
// replica i. The summary adds up devices and errors; its rate is over the
// longest replica's run, p50 is the device-weighted mean of the replicas'
// and p99 the worst replica's. started, if set, is called with i when
// replica i's load generator has started its stations and is about to start
// its clock.
func (rs replicas) load(ctx context.Context, creds *factory.Creds, stations int, d time.Duration, rate float64, pregen int, started func(i int)) (sim.Summary, error) {
	hook := func(i int) func() {
		if started == nil {
			return nil
		}
		return func() { started(i) }
	}
	if len(rs) == 1 {
		return lineLoad(ctx, rs[0].URL, creds, stations, d, rate, pregen, hook(0))
	}
	n := len(rs)
	sums := make([]sim.Summary, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, p := range rs {
		share := *creds
		share.Stations = nil
		for j := i; j < len(creds.Stations); j += n {
			share.Stations = append(share.Stations, creds.Stations[j])
		}
		workers := stations / n
		if i < stations%n {
			workers++
		}
		if len(share.Stations) == 0 || workers == 0 {
			return sim.Summary{}, fmt.Errorf("%d stations cannot be spread over %d replicas", stations, n)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sums[i], errs[i] = lineLoad(ctx, p.URL, &share, workers, d, rate/float64(n), pregen/n, hook(i))
		}()
	}
	wg.Wait()
	var t sim.Summary
	t.ErrorsByCode = map[string]int{}
	var p50 float64
	for i, s := range sums {
		if errs[i] != nil {
			return sim.Summary{}, fmt.Errorf("replica %d: %w", i+1, errs[i])
		}
		t.Stations += s.Stations
		t.Devices += s.Devices
		t.Failed += s.Failed
		t.Retries += s.Retries
		p50 += s.P50ms * float64(s.Devices)
		t.P99ms, t.MaxMs = max(t.P99ms, s.P99ms), max(t.MaxMs, s.MaxMs)
		t.ElapsedSeconds = max(t.ElapsedSeconds, s.ElapsedSeconds)
		for k, v := range s.ErrorsByCode {
			t.ErrorsByCode[k] += v
		}
	}
	if t.Devices > 0 {
		t.P50ms = p50 / float64(t.Devices)
	}
	if t.ElapsedSeconds > 0 {
		t.DevicesPerSecond = float64(t.Devices) / t.ElapsedSeconds
	}
	return t, nil
}

// dbBackends lists the PostgreSQL backends of the environment's ledger
// (none on SQLite, or when they cannot be read).
func dbBackends(ctx context.Context, env *devenv.Env, adminDSN string) []int {
	if env.Config.Database.Driver != "postgres" {
		return nil
	}
	pids, err := pgadmin.BackendPIDs(ctx, adminDSN, env.Config.Database.DSN)
	if err != nil {
		return nil
	}
	return pids
}
