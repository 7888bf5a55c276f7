package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smallstep/certificates/api"
	"github.com/smallstep/certificates/ca"

	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/factory/sim"
	"github.com/tacline/tacline/internal/proccpu"
	"github.com/tacline/tacline/stepca"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/pgadmin"
)

// PeerOptions configure Peer.
type PeerOptions struct {
	Bin           string // the tacline binary (server processes)
	StepCABin     string // bin/step-ca
	Dir           string // working directory (replaced)
	Driver        store.Dialect
	AdminDSN      string
	Stations      int           // concurrent stations for the tacline rounds (default 16)
	StepCAClients int           // concurrent /1.0/sign clients (default 8)
	Round         time.Duration // one measured round (default 5s)
	Rounds        int           // alternating rounds of each kind (default 2)
	// OfferedShare, if positive, adds an open-loop phase after the
	// closed-loop rounds: step-ca and tacline (HSM issuer) are each offered
	// OfferedShare times step-ca's closed-loop rate, in alternating rounds,
	// and their latencies are measured from each request's scheduled start.
	// The 500 devices/s was 0.415 of the 1,205 certificates/s its
	// step-ca signed, so that share asks the same of any machine.
	OfferedShare float64
	// OfferedRate, if positive, is the open-loop phase's rate in requests
	// per second instead (the same for both).
	OfferedRate float64
	Log         io.Writer
}

// PeerResult is printed by `tacline bench peer --json`: step-ca's
// /1.0/sign alone (a), tacline provisioning with its in-process HSM issuer
// (b) and tacline provisioning through step-ca (c), on the same SoftHSM2
// token, machine and run, in alternating rounds. CPU figures are the
// server processes' user+system time per certificate or device; with
// PostgreSQL the backends serving the ledger's database are counted too.
type PeerResult struct {
	DB            string `json:"db"`
	Rounds        int    `json:"rounds"`
	StepCAClients int    `json:"stepca_clients"`
	Stations      int    `json:"stations"`

	StepCACertsPerSecond float64 `json:"stepca_certs_per_second"`
	StepCACPUusPerCert   float64 `json:"stepca_cpu_us_per_cert"`
	StepCAP50ms          float64 `json:"stepca_p50_ms"`
	StepCAP99ms          float64 `json:"stepca_p99_ms"`

	TaclineDevicesPerSecond float64 `json:"tacline_devices_per_second"`
	TaclineCPUusPerDevice   float64 `json:"tacline_cpu_us_per_device"`
	TaclineP50ms            float64 `json:"tacline_p50_ms"`
	TaclineP99ms            float64 `json:"tacline_p99_ms"`

	ViaStepCADevicesPerSecond float64 `json:"via_stepca_devices_per_second"`
	ViaStepCACPUusPerDevice   float64 `json:"via_stepca_cpu_us_per_device"` // tacline + step-ca (+ PostgreSQL)
	ViaStepCAP50ms            float64 `json:"via_stepca_p50_ms"`
	ViaStepCAP99ms            float64 `json:"via_stepca_p99_ms"`

	// The open-loop phase (OfferedShare or OfferedRate): the rate offered
	// to both, and what each delivered with its latencies measured from
	// each request's scheduled start (p99: the worst round's).
	OfferedRate            float64 `json:"offered_rate,omitempty"`
	OpenStepCAPerSecond    float64 `json:"open_stepca_certs_per_second,omitempty"`
	OpenStepCAP50ms        float64 `json:"open_stepca_p50_ms,omitempty"`
	OpenStepCAP99ms        float64 `json:"open_stepca_p99_ms,omitempty"`
	OpenStepCACPUusCert    float64 `json:"open_stepca_cpu_us_per_cert,omitempty"`
	OpenTaclinePerSecond   float64 `json:"open_tacline_devices_per_second,omitempty"`
	OpenTaclineP50ms       float64 `json:"open_tacline_p50_ms,omitempty"`
	OpenTaclineP99ms       float64 `json:"open_tacline_p99_ms,omitempty"`
	OpenTaclineCPUusDevice float64 `json:"open_tacline_cpu_us_per_device,omitempty"`

	Ratio       float64 `json:"ratio"`     // b over a (devices/s over certificates/s)
	CPURatio    float64 `json:"cpu_ratio"` // tacline CPU per device over step-ca CPU per certificate
	Errors      int     `json:"errors"`
	LedgerOK    bool    `json:"ledger_ok"`
	LoadAverage string  `json:"load_average"`
	// CPUStealShare is the share of the machine's CPU time the hypervisor
	// gave to other guests over all the rounds (/proc/stat's steal; 0 on
	// bare metal). The rounds alternate, so steal slows both sides, but
	// not always alike: a run with a large share is one to repeat.
	CPUStealShare float64 `json:"cpu_steal_share"`
}

// benchProvisioner is the plain JWK provisioner round (a) signs through.
const benchProvisioner = "bench"

// roundFigures add up rounds of one kind; latency percentiles are per
// round (p50: the mean over rounds; p99: the worst round).
type roundFigures struct {
	n        int
	cpu      time.Duration
	p50, p99 []float64
	errors   int
	secs     float64
}

func (r *roundFigures) add(o roundFigures) {
	r.n += o.n
	r.cpu += o.cpu
	r.p50 = append(r.p50, o.p50...)
	r.p99 = append(r.p99, o.p99...)
	r.errors += o.errors
	r.secs += o.secs
}

func (r *roundFigures) rate() float64 {
	if r.secs == 0 {
		return 0
	}
	return float64(r.n) / r.secs
}

func (r *roundFigures) cpuPer() float64 {
	if r.n == 0 {
		return 0
	}
	return float64(r.cpu.Microseconds()) / float64(r.n)
}

func (r *roundFigures) p50ms() float64 {
	t := 0.0
	for _, v := range r.p50 {
		t += v
	}
	if len(r.p50) == 0 {
		return 0
	}
	return t / float64(len(r.p50))
}

func (r *roundFigures) p99ms() float64 {
	if len(r.p99) == 0 {
		return 0
	}
	return slices.Max(r.p99)
}

func percentileMs(lat []time.Duration, p float64) float64 {
	if len(lat) == 0 {
		return 0
	}
	slices.Sort(lat)
	return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / float64(time.Millisecond)
}

// Peer runs the side-by-side benchmark (see PeerResult).
func Peer(ctx context.Context, o PeerOptions) (*PeerResult, error) {
	if o.Stations < 1 {
		o.Stations = 16
	}
	if o.StepCAClients < 1 {
		o.StepCAClients = 8
	}
	if o.Round <= 0 {
		o.Round = 5 * time.Second
	}
	if o.Rounds < 1 {
		o.Rounds = 2
	}
	if o.Driver == "" {
		o.Driver = store.SQLite
	}
	logw := o.Log
	if logw == nil {
		logw = io.Discard
	}
	opts := devenv.Options{Dir: o.Dir, Stations: o.Stations, Driver: o.Driver, Log: logw}
	var dsn string
	if o.Driver == store.Postgres {
		var drop func() error
		var err error
		if dsn, drop, err = pgadmin.CreateDatabase(ctx, o.AdminDSN); err != nil {
			return nil, err
		}
		defer drop()
		opts.DSN = dsn
	}
	env, err := devenv.Setup(ctx, opts)
	if err != nil {
		return nil, err
	}
	// The HSM issuer's configuration, chain and key id, before step-ca
	// takes over the environment's configuration.
	hsmConfig := filepath.Join(env.Dir, "tacline-hsm.yaml")
	hsmChain := filepath.Join(env.Dir, "hsm-ca-chain.pem")
	for src, dst := range map[string]string{env.ConfigPath: hsmConfig, filepath.Join(env.ExportsDir, "ca-chain.pem"): hsmChain} {
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			return nil, err
		}
	}
	db, err := store.Open(ctx, env.Config.Database)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	hsmIssuer, err := db.ActiveIssuer(ctx, store.IssuerDevice)
	if err != nil {
		return nil, err
	}
	benchKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	bp, err := stepca.DeviceProvisioner(benchProvisioner, benchKey.Public(), `{"subject": {{ toJson .Subject }}, "sans": {{ toJson .SANs }}, "keyUsage": ["digitalSignature"], "extKeyUsage": ["clientAuth"]}`)
	if err != nil {
		return nil, err
	}
	sca, err := env.UseStepCA(ctx, o.StepCABin, bp)
	if err != nil {
		return nil, err
	}
	defer sca.Stop()
	stepChain := filepath.Join(env.ExportsDir, "ca-chain.pem")
	creds, err := factory.LoadCreds(env.CredsDir, 0)
	if err != nil {
		return nil, err
	}
	client, err := ca.NewClient(sca.URL, ca.WithRootFile(sca.RootFile))
	if err != nil {
		return nil, err
	}
	pgPIDs := func() []int { return nil }
	if o.Driver == store.Postgres {
		pgPIDs = func() []int { return backendPIDs(ctx, o.AdminDSN, dsn) }
	}

	var a, b, c roundFigures
	res := &PeerResult{DB: string(o.Driver), Rounds: o.Rounds, StepCAClients: o.StepCAClients, Stations: o.Stations, LedgerOK: true}
	host0 := readHostCPU()
	for round := 0; round < o.Rounds; round++ {
		fmt.Fprintf(logw, "round %d/%d: step-ca /1.0/sign alone\n", round+1, o.Rounds)
		ra, err := stepCARound(ctx, client, sca.URL, benchKey, sca.Pid(), o.StepCAClients, o.Round, 0)
		if err != nil {
			return nil, err
		}
		a.add(ra)
		fmt.Fprintf(logw, "round %d/%d: tacline, HSM issuer\n", round+1, o.Rounds)
		if err := db.ActivateIssuer(ctx, hsmIssuer.KeyID, "bench"); err != nil {
			return nil, err
		}
		rb, err := taclineRound(ctx, o, env, hsmConfig, hsmChain, creds, nil, pgPIDs, 0)
		if err != nil {
			return nil, err
		}
		b.add(rb)
		fmt.Fprintf(logw, "round %d/%d: tacline through step-ca\n", round+1, o.Rounds)
		rc, err := taclineRound(ctx, o, env, env.ConfigPath, stepChain, creds, sca.Pid, pgPIDs, 0)
		if err != nil {
			return nil, err
		}
		c.add(rc)
	}
	if rate := openRate(o, a.rate()); rate > 0 {
		res.OfferedRate = rate
		var oa, ob roundFigures
		for round := 0; round < o.Rounds; round++ {
			fmt.Fprintf(logw, "round %d/%d: step-ca offered %.0f/s\n", round+1, o.Rounds, rate)
			ra, err := stepCARound(ctx, client, sca.URL, benchKey, sca.Pid(), openClients, o.Round, rate)
			if err != nil {
				return nil, err
			}
			oa.add(ra)
			fmt.Fprintf(logw, "round %d/%d: tacline (HSM issuer) offered %.0f/s\n", round+1, o.Rounds, rate)
			if err := db.ActivateIssuer(ctx, hsmIssuer.KeyID, "bench"); err != nil {
				return nil, err
			}
			rb, err := taclineRound(ctx, o, env, hsmConfig, hsmChain, creds, nil, pgPIDs, rate)
			if err != nil {
				return nil, err
			}
			ob.add(rb)
		}
		res.OpenStepCAPerSecond, res.OpenStepCAP50ms, res.OpenStepCAP99ms = oa.rate(), oa.p50ms(), oa.p99ms()
		res.OpenTaclinePerSecond, res.OpenTaclineP50ms, res.OpenTaclineP99ms = ob.rate(), ob.p50ms(), ob.p99ms()
		res.OpenStepCACPUusCert, res.OpenTaclineCPUusDevice = oa.cpuPer(), ob.cpuPer()
		res.Errors += oa.errors + ob.errors
	}
	res.LoadAverage = loadAverage()
	res.CPUStealShare = stealShare(host0, readHostCPU())
	res.StepCACertsPerSecond, res.StepCACPUusPerCert, res.StepCAP50ms, res.StepCAP99ms = a.rate(), a.cpuPer(), a.p50ms(), a.p99ms()
	res.TaclineDevicesPerSecond, res.TaclineCPUusPerDevice, res.TaclineP50ms, res.TaclineP99ms = b.rate(), b.cpuPer(), b.p50ms(), b.p99ms()
	res.ViaStepCADevicesPerSecond, res.ViaStepCACPUusPerDevice, res.ViaStepCAP50ms, res.ViaStepCAP99ms = c.rate(), c.cpuPer(), c.p50ms(), c.p99ms()
	res.Errors += a.errors + b.errors + c.errors
	if res.StepCACertsPerSecond > 0 {
		res.Ratio = res.TaclineDevicesPerSecond / res.StepCACertsPerSecond
	}
	if res.StepCACPUusPerCert > 0 {
		res.CPURatio = res.TaclineCPUusPerDevice / res.StepCACPUusPerCert
	}
	rep, err := env.CheckLedger(ctx)
	if err != nil {
		return nil, err
	}
	res.LedgerOK = rep.OK()
	return res, nil
}

// openClients is the concurrency of an open-loop round: enough that the
// clients, not the server, never hold a request back from its slot.
const openClients = 64

// openRate is the open-loop phase's offered rate (0: no such phase), from
// step-ca's closed-loop rate.
func openRate(o PeerOptions, stepCARate float64) float64 {
	if o.OfferedRate > 0 {
		return o.OfferedRate
	}
	return o.OfferedShare * stepCARate
}

// stepCARound signs pre-made CSRs with pre-made one-time tokens at step-ca
// from clients concurrent clients for d: as fast as step-ca answers (rate
// 0), or at rate requests/s with each latency measured from the request's
// scheduled start, as the load generator does for tacline.
func stepCARound(ctx context.Context, client *ca.Client, url string, key *ecdsa.PrivateKey, pid, clients int, d time.Duration, rate float64) (roundFigures, error) {
	n := int(2000 * d.Seconds()) // more than step-ca signs on two cores
	if rate > 0 {
		n = int(rate*d.Seconds()) + 1
	}
	reqs := make([]*api.SignRequest, n)
	for i := range reqs {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return roundFigures{}, err
		}
		cn := fmt.Sprintf("bench-%d", i)
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, k)
		if err != nil {
			return roundFigures{}, err
		}
		csr, _ := x509.ParseCertificateRequest(der)
		tok, err := stepca.StationToken(url, benchProvisioner, key, cn, 10*time.Minute)
		if err != nil {
			return roundFigures{}, err
		}
		reqs[i] = &api.SignRequest{CsrPEM: api.NewCertificateRequest(csr), OTT: tok}
	}
	cpu0, err := proccpu.Of(pid)
	if err != nil {
		return roundFigures{}, err
	}
	var next atomic.Int64
	var mu sync.Mutex
	var out roundFigures
	var all []time.Duration
	stop := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			errs := 0
			for time.Now().Before(stop) {
				i := int(next.Add(1)) - 1
				if i >= len(reqs) {
					break
				}
				t0 := time.Now()
				if rate > 0 {
					t0 = start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
					if !sleepUntil(ctx, t0) {
						break
					}
					if !t0.Before(stop) {
						break
					}
				}
				if _, err := client.SignWithContext(ctx, reqs[i]); err != nil {
					errs++
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			out.n += len(lat)
			out.errors += errs
			mu.Unlock()
		}()
	}
	wg.Wait()
	out.secs = time.Since(start).Seconds()
	out.p50, out.p99 = []float64{percentileMs(all, 0.5)}, []float64{percentileMs(all, 0.99)}
	cpu1, err := proccpu.Of(pid)
	if err != nil {
		return roundFigures{}, err
	}
	out.cpu = cpu1 - cpu0
	return out, nil
}

// sleepUntil waits for t; false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// taclineRound runs `tacline serve` with configPath and drives it with the
// load generator for o.Round, as fast as it answers (rate 0) or at rate
// devices/s; CPU is the server's, plus step-ca's (extraPID) and the
// PostgreSQL backends'.
func taclineRound(ctx context.Context, o PeerOptions, env *devenv.Env, configPath, roots string, creds *factory.Creds, extraPID func() int, pgPIDs func() []int, rate float64) (roundFigures, error) {
	proc, err := devenv.StartServer(ctx, o.Bin, configPath, filepath.Join(env.Dir, "server.log"))
	if err != nil {
		return roundFigures{}, err
	}
	defer proc.Kill()
	if _, err := sim.Load(ctx, sim.Config{ServerURL: proc.URL, ServerCAFile: creds.ServerCAFile, RootsFile: roots,
		Stations: creds.Stations, Workers: o.Stations, Duration: time.Second}); err != nil {
		return roundFigures{}, fmt.Errorf("warm-up: %w", err)
	}
	pids := []int{proc.Cmd.Process.Pid}
	if extraPID != nil {
		pids = append(pids, extraPID())
	}
	pids = append(pids, pgPIDs()...)
	cpu0 := cpuOf(pids)
	workers, pregen := o.Stations, int(1500*o.Round.Seconds())
	if rate > 0 {
		workers, pregen = max(workers, openClients), int(rate*o.Round.Seconds())+workers
	}
	sum, err := sim.Load(ctx, sim.Config{ServerURL: proc.URL, ServerCAFile: creds.ServerCAFile, RootsFile: roots,
		Stations: creds.Stations, Workers: workers, Duration: o.Round, Rate: rate, Pregenerate: pregen})
	cpu1 := cpuOf(pids)
	if err != nil {
		return roundFigures{}, err
	}
	if err := proc.Stop(30 * time.Second); err != nil {
		return roundFigures{}, err
	}
	return roundFigures{n: sum.Devices, cpu: cpu1 - cpu0, errors: sum.Failed, secs: sum.ElapsedSeconds,
		p50: []float64{sum.P50ms}, p99: []float64{sum.P99ms}}, nil
}

func cpuOf(pids []int) time.Duration {
	var t time.Duration
	for _, p := range pids {
		if c, err := proccpu.Of(p); err == nil {
			t += c
		}
	}
	return t
}

// backendPIDs lists the PostgreSQL backends connected to the database of
// dsn (the server's pool); none when they cannot be read.
func backendPIDs(ctx context.Context, adminDSN, dsn string) []int {
	pids, err := pgadmin.BackendPIDs(ctx, adminDSN, dsn)
	if err != nil {
		return nil
	}
	return pids
}
