// Package sim drives the station client (package factory) as a factory
// line would: the line simulator behind `tacline station simulate` and
// `tacline demo`, and the provisioning load generator behind `tacline
// bench provision`. Both take the one [Config]. Simulated devices make
// their keys and CSRs with factory.Device, and every identity the server
// returns is checked with factory's Verifier before it counts.
//
// The package promises:
//
//   - Every device is counted once: provisioned and verified, or failed
//     with an error code; a verification failure makes [Simulate] and
//     [Load] return an error of code verification_failed.
//   - Bad configuration is refused before any request, with an
//     invalid_input error naming the field (stations, workers, devices,
//     duration, rate, imei_count, pregenerate, pre_allocate, run_id,
//     roots_file).
//
// Production packages never import it; cmd/tacline, devenv, bench and
// tests do.
package sim

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/policy"
	"github.com/tacline/tacline/tacerr"
)

// ClientTuning is the retry and timeout part of ClientConfig (zero values
// take the defaults).
type ClientTuning struct {
	Timeout     time.Duration
	MaxRetries  int
	RetryBudget time.Duration
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
}

// Config configures a line simulation ([Simulate]: every station
// provisions Devices devices, one after another) or a load run ([Load]:
// devices are provisioned for Duration). It is the one configuration of
// both; each refuses the fields of the other.
type Config struct {
	ServerURL    string
	ServerCAFile string // verifies the server's TLS certificate
	RootsFile    string // trusted device roots (factory.LoadRoots)
	// Stations are the station credentials.
	Stations []factory.StationCreds
	// Workers is the number of concurrent stations (0: one per entry of
	// Stations); more workers than credentials share them round-robin.
	Workers int
	// Devices is the number of devices each station provisions (Simulate).
	Devices int
	// Duration is how long a load run provisions (Load).
	Duration time.Duration
	// Rate is the offered load in devices per second over all stations;
	// 0 runs as fast as the server answers (a closed loop: each station
	// sends its next device as soon as the last one is answered). With a
	// rate, latency is measured from each device's scheduled start (no
	// coordinated omission).
	Rate float64
	// IMEICount is the IMEIs per device to ask for; 0 lets the server use
	// the TAC's default.
	IMEICount int
	// Pregenerate devices (keys and CSRs) are made before the clock starts,
	// spread over the stations (Load): on a real line each device makes its
	// key in its own secure element, not on the station's CPU, so a
	// benchmark keeps that work out of the measured window. Devices beyond
	// it are made during the run.
	Pregenerate int
	// Started, if set, is called once by Load when the stations are set up
	// and the devices pregenerated, just before the clock starts (a
	// benchmark reads the server's counters there, so that they cover the
	// measured phase only).
	Started func()
	// Progress shows a progress bar when it is a terminal (Simulate).
	Progress io.Writer
	// DevicesOut, if set, receives one JSON object per verified device:
	// {"device_serial", "imeis" (15 digits), "certificate" (PEM)}.
	DevicesOut io.Writer
	// KeysDir, if set, receives each verified device's private key as
	// PKCS#8 PEM in <device_serial>.pem (mode 0600).
	KeysDir string
	// PreAllocate makes each station reserve the IMEIs of all its devices
	// first (POST /v1/allocations, as a line that prints labels before
	// programming does), then bind each device to its group (POST
	// /v1/bind). Every group is checked against the station's pools and
	// every bound identity against its group (Simulate).
	PreAllocate bool
	// RunID makes device serials and request ids unique across runs;
	// empty draws a random one.
	RunID  string
	Client ClientTuning
}

// Summary is the outcome of a simulation or load run.
type Summary struct {
	RunID            string         `json:"run_id"`
	Stations         int            `json:"stations"`
	Devices          int            `json:"devices"` // provisioned and verified
	Failed           int            `json:"failed"`
	DevicesPerSecond float64        `json:"devices_per_second"` // verified devices / elapsed
	P50ms            float64        `json:"p50_ms"`
	P99ms            float64        `json:"p99_ms"`
	MaxMs            float64        `json:"max_ms"`
	Retries          int64          `json:"retries"`
	ErrorsByCode     map[string]int `json:"errors_by_code"`
	Elapsed          time.Duration  `json:"-"`
	ElapsedSeconds   float64        `json:"elapsed_seconds"`
}

// Simulate runs the line simulation. It returns the summary and, when a
// device failed, an error: code verification_failed if any returned
// identity failed VerifyIssued, devices_failed otherwise.
func Simulate(ctx context.Context, cfg Config) (Summary, error) {
	if err := cfg.validate(true); err != nil {
		return Summary{}, err
	}
	e, err := newEngine(ctx, cfg.engine())
	if err != nil {
		return Summary{}, err
	}
	defer e.close()
	e.startBar(cfg.Progress, len(e.workers)*cfg.Devices)
	return e.run(ctx, func(_ *worker, done int) bool { return done < cfg.Devices }, nil)
}

// Load runs provisioning for cfg.Duration and returns the summary (same
// error rules as Simulate).
func Load(ctx context.Context, cfg Config) (Summary, error) {
	if err := cfg.validate(false); err != nil {
		return Summary{}, err
	}
	e, err := newEngine(ctx, cfg.engine())
	if err != nil {
		return Summary{}, err
	}
	defer e.close()
	if err := e.pregenerate(ctx, cfg.Pregenerate); err != nil {
		return Summary{}, err
	}
	if cfg.Started != nil {
		cfg.Started()
	}
	stop := make(chan struct{})
	t := time.AfterFunc(cfg.Duration, func() { close(stop) })
	defer t.Stop()
	return e.run(ctx, func(*worker, int) bool {
		select {
		case <-stop:
			return false
		default:
			return true
		}
	}, stop)
}

func (cfg Config) engine() engineConfig {
	n := cfg.Workers
	if n == 0 {
		n = len(cfg.Stations)
	}
	return engineConfig{
		serverURL: cfg.ServerURL, serverCA: cfg.ServerCAFile, rootsFile: cfg.RootsFile,
		creds: cfg.Stations, workers: n, rate: cfg.Rate, imeiCount: cfg.IMEICount,
		runID: cfg.RunID, tuning: cfg.Client, devicesOut: cfg.DevicesOut, keysDir: cfg.KeysDir,
		preAllocate: cfg.PreAllocate, devicesPerStation: cfg.Devices,
	}
}

// validate checks cfg for Simulate (simulate) or Load.
func (cfg Config) validate(simulate bool) error {
	if len(cfg.Stations) == 0 {
		return tacerr.Field(tacerr.InvalidInput, "stations", "at least one station's credentials are required")
	}
	for i, c := range cfg.Stations {
		if c.ID == "" {
			return tacerr.Field(tacerr.InvalidInput, fmt.Sprintf("stations[%d].id", i), "is required")
		}
		if c.Product == "" && c.Pool == "" {
			return tacerr.Field(tacerr.InvalidInput, fmt.Sprintf("stations[%d].product", i), "station %s needs a product or a pool", c.ID)
		}
	}
	if cfg.Workers < 0 {
		return tacerr.Field(tacerr.InvalidInput, "workers", "must not be negative, got %d", cfg.Workers)
	}
	if cfg.Rate < 0 || cfg.Rate != cfg.Rate {
		return tacerr.Field(tacerr.InvalidInput, "rate", "must be 0 (as fast as possible) or a positive rate, got %v", cfg.Rate)
	}
	if cfg.IMEICount < 0 || cfg.IMEICount > factory.MaxIMEIsPerDevice {
		return tacerr.Field(tacerr.InvalidInput, "imei_count", "must be 0 (the TAC's default) to %d, got %d", factory.MaxIMEIsPerDevice, cfg.IMEICount)
	}
	if cfg.Pregenerate < 0 {
		return tacerr.Field(tacerr.InvalidInput, "pregenerate", "must not be negative, got %d", cfg.Pregenerate)
	}
	if simulate {
		switch {
		case cfg.Devices < 1:
			return tacerr.Field(tacerr.InvalidInput, "devices", "each station provisions at least 1 device, got %d", cfg.Devices)
		case cfg.Duration != 0:
			return tacerr.Field(tacerr.InvalidInput, "duration", "is for a load run (Load); a simulation provisions a number of devices")
		case cfg.Pregenerate != 0:
			return tacerr.Field(tacerr.InvalidInput, "pregenerate", "is for a load run (Load)")
		case cfg.Started != nil:
			return tacerr.Field(tacerr.InvalidInput, "started", "is for a load run (Load)")
		}
		return nil
	}
	switch {
	case cfg.Duration <= 0:
		return tacerr.Field(tacerr.InvalidInput, "duration", "must be positive, got %s", cfg.Duration)
	case cfg.Devices != 0:
		return tacerr.Field(tacerr.InvalidInput, "devices", "is for a simulation (Simulate); a load run lasts a duration")
	case cfg.PreAllocate:
		return tacerr.Field(tacerr.InvalidInput, "pre_allocate", "is for a simulation (Simulate)")
	}
	return nil
}

type engineConfig struct {
	serverURL, serverCA, rootsFile string
	creds                          []factory.StationCreds
	workers                        int
	rate                           float64
	imeiCount                      int
	runID                          string
	tuning                         ClientTuning
	devicesOut                     io.Writer
	keysDir                        string
	preAllocate                    bool
	devicesPerStation              int
}

// engine runs workers (stations) that provision devices and records what
// happened.
type engine struct {
	cfg     engineConfig
	verify  *factory.Verifier
	clients []*factory.Client // one per creds
	pools   [][]factory.PoolRange
	// allocPools[i] is the pool creds[i] pre-allocates from.
	allocPools []string
	workers    []*worker
	retries    atomic.Int64
	slot       atomic.Int64
	start      time.Time
	bar        *progressbar.ProgressBar

	outMu sync.Mutex // DevicesOut
	enc   *json.Encoder

	mu        sync.Mutex
	latencies []time.Duration
	byCode    map[string]int
	ok        int
	failed    int
	verifyBad int
	fatal     error
}

// worker is one simulated station.
type worker struct {
	idx    int
	creds  factory.StationCreds
	client *factory.Client
	pools  []factory.PoolRange
	prefix string       // device serial prefix
	ready  []madeDevice // devices made before the run, for sequence numbers 1..len
	// Pre-allocation: the pool, and the IMEI group reserved for each
	// device (nil: provision in one call).
	allocPool string
	groups    [][]string
}

// serial is the device serial of the worker's seq-th device.
func (w *worker) serial(seq int) string { return fmt.Sprintf("%s%06d", w.prefix, seq) }

// madeDevice is a device with its CSR, ready to be provisioned.
type madeDevice struct {
	dev *factory.Device
	csr []byte
}

func makeDevice(serial string) (*factory.Device, []byte, error) {
	dev, err := factory.NewDevice(serial)
	if err != nil {
		return nil, nil, err
	}
	csr, err := dev.CSR()
	if err != nil {
		return nil, nil, err
	}
	return dev, csr, nil
}

// pregenerate makes n devices (keys and CSRs) spread over the workers,
// using every CPU.
func (e *engine) pregenerate(ctx context.Context, n int) error {
	if n <= 0 {
		return nil
	}
	per := (n + len(e.workers) - 1) / len(e.workers)
	jobs := make(chan *worker)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for w := range jobs {
				w.ready = make([]madeDevice, per)
				for i := range w.ready {
					dev, csr, err := makeDevice(w.serial(i + 1))
					if err != nil {
						mu.Lock()
						firstErr = cmp.Or(firstErr, err)
						mu.Unlock()
						return
					}
					w.ready[i] = madeDevice{dev, csr}
				}
			}
		})
	}
	for _, w := range e.workers {
		if ctx.Err() != nil {
			break
		}
		jobs <- w
	}
	close(jobs)
	wg.Wait()
	return cmp.Or(firstErr, ctx.Err())
}

func newEngine(ctx context.Context, cfg engineConfig) (*engine, error) {
	if cfg.runID == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		cfg.runID = hex.EncodeToString(b[:])
	}
	if err := checkSerialPart("run_id", cfg.runID); err != nil {
		return nil, err
	}
	roots, err := factory.LoadRoots(cfg.rootsFile)
	if err != nil {
		return nil, err
	}
	if cfg.keysDir != "" {
		if err := os.MkdirAll(cfg.keysDir, 0o700); err != nil {
			return nil, tacerr.Wrap(tacerr.InvalidInput, err, "keys_dir: create %s", cfg.keysDir)
		}
	}
	e := &engine{cfg: cfg, verify: factory.NewVerifier(roots), byCode: map[string]int{}}
	if cfg.devicesOut != nil {
		e.enc = json.NewEncoder(cfg.devicesOut)
		e.enc.SetEscapeHTML(false)
	}
	for _, c := range cfg.creds {
		cl, err := factory.NewClient(factory.ClientConfig{
			ServerURL: cfg.serverURL, CertFile: c.CertFile, KeyFile: c.KeyFile, CAFile: cfg.serverCA,
			Timeout: cfg.tuning.Timeout, MaxRetries: cfg.tuning.MaxRetries, RetryBudget: cfg.tuning.RetryBudget,
			BaseBackoff: cfg.tuning.BaseBackoff, MaxBackoff: cfg.tuning.MaxBackoff,
			OnRetry:              func(int, error) { e.retries.Add(1) },
			GetClientCertificate: c.GetClientCertificate,
		})
		if err != nil {
			e.close()
			return nil, fmt.Errorf("station %s: %w", c.ID, err)
		}
		e.clients = append(e.clients, cl)
		pools, allocPool, err := stationPools(ctx, cl, c)
		if err != nil {
			e.close()
			return nil, err
		}
		e.pools = append(e.pools, pools)
		e.allocPools = append(e.allocPools, allocPool)
	}
	for i := range cfg.workers {
		k := i % len(cfg.creds)
		e.workers = append(e.workers, &worker{
			idx: i, creds: cfg.creds[k], client: e.clients[k], pools: e.pools[k], allocPool: e.allocPools[k],
			prefix: serialPrefix(cfg.creds[k].ID, cfg.runID, i),
		})
	}
	return e, nil
}

func (e *engine) close() {
	for _, c := range e.clients {
		c.Close()
	}
}

// stationPools asks the server which pools the station draws from and keeps
// those of its pool or product. It also names the pool to pre-allocate
// from: the station's pool, or its product's pool with the most free IMEIs.
func stationPools(ctx context.Context, cl *factory.Client, c factory.StationCreds) ([]factory.PoolRange, string, error) {
	list, err := cl.Pools(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("station %s: GET %s: %w", c.ID, wire.PathPools, err)
	}
	keep := func(p wire.PoolStatus) bool {
		if c.Pool != "" {
			return p.Name == c.Pool
		}
		return p.Product == c.Product
	}
	ranges, err := factory.PoolRanges(list, keep)
	if err != nil {
		return nil, "", fmt.Errorf("station %s: %w", c.ID, err)
	}
	if len(ranges) == 0 {
		what := "product " + c.Product
		if c.Pool != "" {
			what = "pool " + c.Pool
		}
		return nil, "", tacerr.Field(tacerr.StationNotAuthorized, "product", "station %s: GET %s lists no pool for %s; enroll the station for it", c.ID, wire.PathPools, what)
	}
	alloc := c.Pool
	if alloc == "" {
		free := int64(-1)
		for _, p := range list.Pools {
			if keep(p) && p.Free > free {
				alloc, free = p.Name, p.Free
			}
		}
	}
	return ranges, alloc, nil
}

// serialPrefix is "<station>-<run>-<worker>-" with the station id cut and
// cleaned so that prefix + 6-digit sequence fits a certificate serialNumber.
func serialPrefix(station, runID string, worker int) string {
	tail := fmt.Sprintf("-%s-%d-", runID, worker)
	keep := policy.MaxDeviceSerial - len(tail) - 6
	var b strings.Builder
	for i := 0; i < len(station) && b.Len() < keep; i++ {
		c := station[i]
		if !policy.DeviceSerialChar(c) {
			c = '-'
		}
		b.WriteByte(c)
	}
	return b.String() + tail
}

func checkSerialPart(field, s string) error {
	if s == "" || len(s) > 16 {
		return tacerr.Field(tacerr.InvalidInput, field, "must be 1 to 16 characters, got %d", len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return tacerr.Field(tacerr.InvalidInput, field, "must be letters and digits only, character %d is %q", i+1, c)
		}
	}
	return nil
}

func (e *engine) startBar(w io.Writer, total int) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return
	}
	e.bar = progressbar.NewOptions(total,
		progressbar.OptionSetWriter(f),
		progressbar.OptionSetDescription("provisioning"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("devices"),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}

// run drives every worker until more(worker, devicesDone) says stop, then
// summarises. stop, if not nil, also interrupts a paced wait.
func (e *engine) run(ctx context.Context, more func(*worker, int) bool, stop <-chan struct{}) (Summary, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	e.start = time.Now()
	var wg sync.WaitGroup
	for _, w := range e.workers {
		wg.Go(func() {
			if e.cfg.preAllocate && !e.allocate(ctx, w) {
				return
			}
			for done := 0; more(w, done) && ctx.Err() == nil; done++ {
				if !e.device(ctx, w, done+1, stop) {
					return
				}
				if e.fatalErr() != nil {
					cancel()
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(e.start)
	if e.bar != nil {
		_ = e.bar.Finish()
	}
	s := e.summary(elapsed)
	if err := e.fatalErr(); err != nil {
		return s, err
	}
	if err := ctx.Err(); err != nil {
		return s, err
	}
	switch {
	case e.verifyBad > 0:
		return s, tacerr.New(tacerr.VerificationFailed, "%d of %d devices got identities that failed verification (see errors_by_code)", e.verifyBad, e.ok+e.failed)
	case e.failed > 0:
		return s, tacerr.New(tacerr.DevicesFailed, "%d of %d devices were not provisioned (see errors_by_code)", e.failed, e.ok+e.failed)
	}
	return s, nil
}

// device provisions one device; false means the worker must stop (paced
// start after stop, or cancellation).
func (e *engine) device(ctx context.Context, w *worker, seq int, stop <-chan struct{}) bool {
	var dev *factory.Device
	var csr []byte
	if seq <= len(w.ready) {
		dev, csr = w.ready[seq-1].dev, w.ready[seq-1].csr
		w.ready[seq-1] = madeDevice{} // let it be collected
	} else {
		var err error
		if dev, csr, err = makeDevice(w.serial(seq)); err != nil {
			e.setFatal(err)
			return false
		}
	}
	serial := dev.Serial()
	begin := time.Now()
	if e.cfg.rate > 0 {
		i := e.slot.Add(1) - 1
		begin = e.start.Add(time.Duration(float64(i) / e.cfg.rate * float64(time.Second)))
		if !waitUntil(ctx, begin, stop) {
			return false
		}
	}
	var resp *wire.ProvisionResponse
	var err error
	if w.groups != nil {
		resp, err = w.client.Bind(ctx, wire.BindRequest{
			RequestID: "req-" + serial, IMEIs: w.groups[seq-1], DeviceSerial: serial, CSR: string(csr),
		})
	} else {
		resp, err = w.client.Provision(ctx, wire.ProvisionRequest{
			RequestID:    "req-" + serial,
			DeviceSerial: serial,
			Product:      w.creds.Product,
			Pool:         w.creds.Pool,
			IMEICount:    e.cfg.imeiCount,
			CSR:          string(csr),
		})
	}
	lat := time.Since(begin)
	if err != nil {
		if ctx.Err() != nil {
			return false // interrupted, not a device failure
		}
		e.record(0, factory.ErrorCode(err), false)
		return true
	}
	err = e.verify.Verify(resp, dev, w.pools)
	if err == nil && w.groups != nil {
		err = factory.VerifyBinding(resp.IMEIs, w.groups[seq-1])
	}
	if err != nil {
		e.record(0, string(tacerr.VerificationFailed), true)
		return true
	}
	if err := e.output(dev, resp); err != nil {
		e.setFatal(err)
		return false
	}
	e.record(lat, "", false)
	return true
}

// waitUntil sleeps until t; false if ctx or stop ended first.
func waitUntil(ctx context.Context, t time.Time, stop <-chan struct{}) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
	case <-stop:
	}
	return false
}

// output writes the device record and key.
func (e *engine) output(dev *factory.Device, resp *wire.ProvisionResponse) error {
	if e.cfg.keysDir != "" {
		key, err := dev.KeyPEM()
		if err != nil {
			return err
		}
		path := filepath.Join(e.cfg.keysDir, dev.Serial()+".pem")
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return tacerr.Wrap(tacerr.Internal, err, "write device key %s", path)
		}
		_, werr := f.Write(key)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return tacerr.Wrap(tacerr.Internal, werr, "write device key %s", path)
		}
	}
	if e.enc != nil {
		rec := DeviceRecord{DeviceSerial: resp.DeviceSerial, IMEIs: resp.IMEIs, Certificate: resp.Certificate}
		e.outMu.Lock()
		err := e.enc.Encode(rec)
		e.outMu.Unlock()
		if err != nil {
			return tacerr.Wrap(tacerr.Internal, err, "write the device record of %s", dev.Serial())
		}
	}
	return nil
}

// DeviceRecord is one line of the simulator's NDJSON device output.
type DeviceRecord struct {
	DeviceSerial string   `json:"device_serial"`
	IMEIs        []string `json:"imeis"`
	Certificate  string   `json:"certificate"`
}

func (e *engine) record(lat time.Duration, code string, verifyFailed bool) {
	e.mu.Lock()
	if code == "" {
		e.ok++
		e.latencies = append(e.latencies, lat)
	} else {
		e.failed++
		e.byCode[code]++
		if verifyFailed {
			e.verifyBad++
		}
	}
	e.mu.Unlock()
	if e.bar != nil {
		_ = e.bar.Add(1)
	}
}

func (e *engine) setFatal(err error) {
	e.mu.Lock()
	if e.fatal == nil {
		e.fatal = err
	}
	e.mu.Unlock()
}

func (e *engine) fatalErr() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.fatal
}

func (e *engine) summary(elapsed time.Duration) Summary {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := Summary{
		RunID:          e.cfg.runID,
		Stations:       len(e.workers),
		Devices:        e.ok,
		Failed:         e.failed,
		Retries:        e.retries.Load(),
		ErrorsByCode:   make(map[string]int, len(e.byCode)),
		Elapsed:        elapsed,
		ElapsedSeconds: elapsed.Seconds(),
	}
	for k, v := range e.byCode {
		s.ErrorsByCode[k] = v
	}
	if elapsed > 0 {
		s.DevicesPerSecond = float64(e.ok) / elapsed.Seconds()
	}
	lat := slices.Clone(e.latencies)
	slices.Sort(lat)
	s.P50ms = ms(percentile(lat, 0.50))
	s.P99ms = ms(percentile(lat, 0.99))
	if len(lat) > 0 {
		s.MaxMs = ms(lat[len(lat)-1])
	}
	return s
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(rank, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
