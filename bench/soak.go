package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/factory/sim"
	"github.com/tacline/tacline/store"
)

// SoakOptions configure Soak.
type SoakOptions struct {
	Bin      string // the tacline binary (server process)
	Dir      string // working directory (replaced)
	Stations int
	Duration time.Duration // whole run (default 30m)
	Interval time.Duration // one sample per interval (default 1m)
	Rate     float64       // offered devices/s over all stations
	Driver   store.Dialect
	AdminDSN string // PostgreSQL server for a throwaway database
	Log      io.Writer
}

// SoakSample is one interval of a soak: the load of the interval and the
// server's state at its end.
type SoakSample struct {
	Minutes          float64 `json:"t_minutes"` // end of the interval since the start
	Devices          int     `json:"devices"`   // provisioned so far (with the warm-up's)
	DevicesPerSecond float64 `json:"devices_per_second"`
	Errors           int     `json:"errors"`
	P99ms            float64 `json:"p99_ms"`
	RSSMiB           float64 `json:"rss_mib"` // process_resident_memory_bytes
	// RSSAnonMiB and RSSFileMiB split the RSS (/proc/PID/status): the
	// process's own memory, and pages of mapped files (the SQLite readers
	// map the ledger, so these grow with it).
	RSSAnonMiB       float64 `json:"rss_anon_mib"`
	RSSFileMiB       float64 `json:"rss_file_mib"`
	Goroutines       float64 `json:"goroutines"` // go_goroutines
	OpenFiles        float64 `json:"open_files"` // process_open_fds
	HeapMiB          float64 `json:"heap_mib"`   // go_memstats_heap_inuse_bytes
	DBMiB            float64 `json:"db_mib"`
	DBBytesPerDevice float64 `json:"db_bytes_per_device"` // growth since set-up / devices
	LoadAverage      string  `json:"load_average"`
}

// SoakResult is printed by `tacline bench soak --json`.
type SoakResult struct {
	DB          string       `json:"db"`
	Stations    int          `json:"stations"`
	OfferedRate float64      `json:"offered_rate"`
	Duration    string       `json:"duration"`
	Devices     int          `json:"devices"`
	Errors      int          `json:"errors"`
	LedgerOK    bool         `json:"ledger_ok"`
	Samples     []SoakSample `json:"samples"`
	// Slopes are least-squares slopes per hour of each series over the
	// samples after the first (the first interval includes start-up).
	Slopes map[string]float64 `json:"slopes_per_hour"`
	// Drift is each slope times the run's length over the series' mean:
	// the fraction by which the series grew over the run (0.05 = 5%).
	Drift map[string]float64 `json:"drift"`
	// SecondHalf* are the same over the second half of the samples, after
	// caches (SQLite's page cache, the Go heap's target) have filled.
	SecondHalfSlopes map[string]float64 `json:"slopes_second_half_per_hour"`
	SecondHalfDrift  map[string]float64 `json:"drift_second_half"`
}

// Soak provisions at a steady rate against a server running as a separate
// process and samples it every interval: RSS, goroutines, open files and
// heap from its /metrics, the ledger's size per provisioned device and the
// interval's p99 latency. It reports each series and its slope: a service
// that runs for years must not grow except by the ledger's own data.
func Soak(ctx context.Context, o SoakOptions) (*SoakResult, error) {
	if o.Stations < 1 {
		o.Stations = 16
	}
	if o.Duration <= 0 {
		o.Duration = 30 * time.Minute
	}
	if o.Interval <= 0 {
		o.Interval = time.Minute
	}
	if o.Rate <= 0 {
		return nil, fmt.Errorf("soak: --rate must be positive (devices per second)")
	}
	if o.Driver == "" {
		o.Driver = store.SQLite
	}
	logw := o.Log
	if logw == nil {
		logw = io.Discard
	}
	env, drop, err := setupEnv(ctx, devenv.Options{Dir: o.Dir, Stations: o.Stations, Driver: o.Driver, Log: logw}, o.AdminDSN)
	defer drop()
	if err != nil {
		return nil, err
	}
	proc, err := devenv.StartServer(ctx, o.Bin, env.ConfigPath, filepath.Join(env.Dir, "server.log"))
	if err != nil {
		return nil, err
	}
	defer proc.Kill()
	creds, err := factory.LoadCreds(env.CredsDir, 0)
	if err != nil {
		return nil, err
	}
	client, err := devenv.RoleClient(env, "operator")
	if err != nil {
		return nil, err
	}
	load := func(d time.Duration, pregen int) (sim.Summary, error) {
		return lineLoad(ctx, proc.URL, creds, o.Stations, d, o.Rate, pregen, nil)
	}
	// The ledger's size before any device: the catalogue, CAs and schema.
	base, err := store.Size(ctx, env.Config.Database)
	if err != nil {
		return nil, err
	}
	warm, err := load(10*time.Second, int(o.Rate*12))
	if err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	res := &SoakResult{DB: string(o.Driver), Stations: o.Stations, OfferedRate: o.Rate, Duration: o.Duration.String()}
	res.Devices = warm.Devices
	start := time.Now()
	for i := 1; time.Since(start) < o.Duration-o.Interval/2; i++ {
		sum, err := load(o.Interval, int(o.Rate*o.Interval.Seconds()*1.1))
		if err != nil {
			return nil, fmt.Errorf("interval %d: %w", i, err)
		}
		res.Devices += sum.Devices
		res.Errors += sum.Failed
		s := SoakSample{Minutes: time.Since(start).Minutes(), Devices: res.Devices, DevicesPerSecond: sum.DevicesPerSecond,
			Errors: sum.Failed, P99ms: sum.P99ms, LoadAverage: loadAverage()}
		m, err := scrape(ctx, client, proc.URL+"/metrics")
		if err != nil {
			return nil, err
		}
		s.RSSMiB = m["process_resident_memory_bytes"] / (1 << 20)
		s.Goroutines, s.OpenFiles = m["go_goroutines"], m["process_open_fds"]
		s.HeapMiB = m["go_memstats_heap_inuse_bytes"] / (1 << 20)
		s.RSSAnonMiB, s.RSSFileMiB = rssSplit(proc.Cmd.Process.Pid)
		size, err := store.Size(ctx, env.Config.Database)
		if err != nil {
			return nil, err
		}
		s.DBMiB = float64(size) / (1 << 20)
		if res.Devices > 0 {
			s.DBBytesPerDevice = float64(size-base) / float64(res.Devices)
		}
		res.Samples = append(res.Samples, s)
		fmt.Fprintf(logw, "soak %5.1f min: %d devices (%.0f/s, %d errors), p99 %.1f ms, RSS %.1f MiB (anon %.1f, files %.1f), heap %.1f MiB, %0.f goroutines, %.0f fds, ledger %.1f MiB (%.0f B/device), load %s\n",
			s.Minutes, s.Devices, s.DevicesPerSecond, s.Errors, s.P99ms, s.RSSMiB, s.RSSAnonMiB, s.RSSFileMiB, s.HeapMiB, s.Goroutines, s.OpenFiles, s.DBMiB, s.DBBytesPerDevice, s.LoadAverage)
	}
	if err := proc.Stop(30 * time.Second); err != nil {
		return nil, err
	}
	rep, err := env.CheckLedger(ctx)
	if err != nil {
		return nil, err
	}
	res.LedgerOK = rep.OK()
	res.Slopes, res.Drift = slopes(res.Samples)
	res.SecondHalfSlopes, res.SecondHalfDrift = slopes(res.Samples[len(res.Samples)/2:])
	return res, nil
}

// soakSeries names the series whose slopes Soak reports.
var soakSeries = map[string]func(SoakSample) float64{
	"rss_mib":             func(s SoakSample) float64 { return s.RSSMiB },
	"rss_anon_mib":        func(s SoakSample) float64 { return s.RSSAnonMiB },
	"heap_mib":            func(s SoakSample) float64 { return s.HeapMiB },
	"goroutines":          func(s SoakSample) float64 { return s.Goroutines },
	"open_files":          func(s SoakSample) float64 { return s.OpenFiles },
	"db_bytes_per_device": func(s SoakSample) float64 { return s.DBBytesPerDevice },
	"p99_ms":              func(s SoakSample) float64 { return s.P99ms },
}

// slopes fits a least-squares line to each series against time, leaving
// out the first sample when there are at least three.
func slopes(samples []SoakSample) (map[string]float64, map[string]float64) {
	if len(samples) >= 3 {
		samples = samples[1:]
	}
	sl, drift := map[string]float64{}, map[string]float64{}
	if len(samples) < 2 {
		return sl, drift
	}
	span := (samples[len(samples)-1].Minutes - samples[0].Minutes) / 60
	for name, f := range soakSeries {
		xs, ys := make([]float64, len(samples)), make([]float64, len(samples))
		for i, s := range samples {
			xs[i], ys[i] = s.Minutes/60, f(s)
		}
		k, mean := LinearSlope(xs, ys)
		sl[name] = k
		if mean != 0 {
			drift[name] = k * span / mean
		}
	}
	return sl, drift
}

// LinearSlope returns the least-squares slope of ys over xs and the mean of
// ys.
func LinearSlope(xs, ys []float64) (slope, mean float64) {
	n := float64(len(xs))
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	if n == 0 {
		return 0, 0
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0, sy / n
	}
	return (n*sxy - sx*sy) / d, sy / n
}

// scrape reads the unlabelled samples of a Prometheus text exposition.
func scrape(ctx context.Context, c *http.Client, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	return parseSamples(resp.Body)
}

// parseSamples reads the unlabelled samples of a Prometheus text
// exposition.
func parseSamples(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok || strings.ContainsRune(name, '{') {
			continue
		}
		if v, err := strconv.ParseFloat(strings.Fields(val)[0], 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}

// rssSplit reads RssAnon and RssFile (MiB) from /proc/PID/status; zero
// where the kernel does not report them.
func rssSplit(pid int) (anon, file float64) {
	m := procStatusMiB(pid)
	return m["RssAnon"], m["RssFile"]
}

// procStatusMiB reads the kB fields of /proc/PID/status (VmHWM, VmRSS,
// RssAnon...) in MiB; empty if the process is gone.
func procStatusMiB(pid int) map[string]float64 {
	out := map[string]float64{}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		if kb, err := strconv.ParseFloat(f[0], 64); err == nil {
			out[k] = kb / 1024
		}
	}
	return out
}
