package devenv

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/ca/castore"
	"github.com/tacline/tacline/config"
	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/factory/sim"
	"github.com/tacline/tacline/server"
	"github.com/tacline/tacline/site"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// SitesOptions configure SitesDemo.
type SitesOptions struct {
	Dir             string
	Sites           int // default 2
	StationsPerSite int // default 2
	Devices         int // per station, default 250
	Bin             string
	Out             io.Writer
	// CutFor is how long the last site's link to HQ is cut while its
	// line provisions (default 5s; negative: never cut).
	CutFor time.Duration
	// LeaseSize is the SNRs per lease (default: enough for the whole run,
	// so the cut site never runs dry).
	LeaseSize int64
	// KillSites and KillHQ are how many times a site (in turn) and HQ are
	// killed with SIGKILL and restarted on the same address while the
	// lines provision and sync, one kill every KillEvery (default 1s).
	KillSites, KillHQ int
	KillEvery         time.Duration
	// CutWholeRun cuts the last site's link for its whole line run and
	// restores it only then, measuring the catch-up (the benchmark of
	// docs/benchmarks.md); CutFor is then ignored.
	CutWholeRun bool
	// KeepOldLedgers copies each site's ledger, as it is before its server
	// first starts, to ledger.db.old (the "old backup" of the rollback
	// test).
	KeepOldLedgers bool
}

// SiteEnv is one site of the sites demo.
type SiteEnv struct {
	*Env
	Name    string
	HQPool  string
	Proc    *Proc
	Proxy   *Proxy // the site's link to HQ when it is cut; nil otherwise
	Summary sim.Summary
	devices bytes.Buffer // the simulator's verified devices
}

// SitesResult is what SitesDemo did.
type SitesResult struct {
	HQ    *Env
	Sites []*SiteEnv
	// Answered is the devices the sites answered (and the stations
	// verified); AtHQ those HQ recorded; Missing those answered but absent
	// at HQ; Duplicates IMEIs found twice across HQ's export.
	Answered, AtHQ, Missing, Duplicates int
	Checks                              map[string]store.CheckReport // ledger check per ledger ("hq", site names)
	// SiteKills and HQKills are the SIGKILLs done.
	SiteKills, HQKills int
	// With CutWholeRun: the events the cut site had pending when its link
	// came back, and how long HQ took to apply them.
	CatchUpEvents  int64
	CatchUpSeconds float64
}

// SitesDemo runs headquarters and o.Sites factory sites as separate
// processes: each site is enrolled at HQ (certificate and checkpoint key),
// leased a block of its own HQ pool, and provisions with its stations;
// the last site reaches HQ through a loopback proxy that is cut for CutFor
// while its line keeps provisioning, then restored. It waits until every
// site's events are applied at HQ, stops every process, checks every
// ledger, and writes DIR/exports/devices.ndjson (every site's devices as
// HQ recorded them, each line with its site) and DIR/exports/ca-chain.pem
// (HQ's device root and each site's issuing CA, which HQ's root certified
// in the ceremony at HQ).
func SitesDemo(ctx context.Context, o SitesOptions) (*SitesResult, error) {
	if o.Sites == 0 {
		o.Sites = 2
	}
	if o.StationsPerSite == 0 {
		o.StationsPerSite = 2
	}
	if o.Devices == 0 {
		o.Devices = 250
	}
	if o.CutFor == 0 {
		o.CutFor = 5 * time.Second
	}
	if o.LeaseSize == 0 {
		o.LeaseSize = int64(o.StationsPerSite*o.Devices*2) + 100
	}
	if o.Sites < 1 || o.Sites > 4 {
		return nil, tacerr.Field(tacerr.InvalidInput, "sites", "must be between 1 and 4")
	}
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "exports"), 0o755); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "tacline sites demo in %s: headquarters and %d sites\n", dir, o.Sites)
	fmt.Fprintln(out, "1. headquarters: HSM token, key ceremony, catalogue, one pool per site")
	hq, err := Setup(ctx, Options{Dir: filepath.Join(dir, "hq"), Stations: o.Sites})
	if err != nil {
		return nil, err
	}
	witnessKey, err := setupWitness(hq)
	if err != nil {
		return nil, err
	}
	hqServerCA := filepath.Join(hq.Dir, "server-ca.pem")
	if err := concatFiles(hqServerCA, filepath.Join(hq.Dir, "ca/infra-root.pem"), filepath.Join(hq.Dir, "ca/station-ca.pem")); err != nil {
		return nil, err
	}
	res := &SitesResult{HQ: hq, Checks: map[string]store.CheckReport{}}
	var pools []string
	for k := 1; k <= o.Sites; k++ {
		pools = append(pools, fmt.Sprintf("pool-%02d", k))
	}
	for k := 1; k <= o.Sites; k++ {
		name := fmt.Sprintf("site-%d", k)
		fmt.Fprintf(out, "2.%d %s: its own HSM token, ledger and station CA; its issuing CA certified by headquarters' device root (`tacline ca certify`); enrolled at headquarters\n", k, name)
		se, err := setupSite(ctx, hq, o.Bin, dir, name, pools[k-1], pools)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		res.Sites = append(res.Sites, se)
	}

	fmt.Fprintln(out, "3. starting headquarters")
	hqProc, err := StartServer(ctx, o.Bin, hq.ConfigPath, filepath.Join(hq.Dir, "server.log"))
	if err != nil {
		return nil, err
	}
	procs := []*Proc{hqProc}
	defer func() {
		for _, p := range procs {
			p.Kill()
		}
		for _, se := range res.Sites {
			if se.Proxy != nil {
				se.Proxy.Close()
			}
		}
	}()
	fmt.Fprintf(out, "   headquarters on %s\n", hqProc.URL)

	for i, se := range res.Sites {
		url := hqProc.URL
		if i == len(res.Sites)-1 && o.CutFor > 0 {
			if se.Proxy, err = StartProxy(hqProc.Addr); err != nil {
				return nil, err
			}
			url = "https://" + se.Proxy.Addr
		}
		if err := se.configure(ctx, url, hqServerCA, witnessKey, o); err != nil {
			return nil, fmt.Errorf("%s: %w", se.Name, err)
		}
		if o.KeepOldLedgers {
			if err := concatFiles(filepath.Join(se.Dir, "ledger.db.old"), filepath.Join(se.Dir, "ledger.db")); err != nil {
				return nil, err
			}
		}
		started := time.Now()
		if se.Proc, err = StartServer(ctx, o.Bin, se.ConfigPath, filepath.Join(se.Dir, "server.log")); err != nil {
			return nil, fmt.Errorf("%s: %w", se.Name, err)
		}
		procs = append(procs, se.Proc)
		// A site issues only once HQ confirmed its ledger since its
		// start (rollback safety): wait for its first sync.
		if err := waitConfirmed(ctx, hq, se, started, 60*time.Second); err != nil {
			return nil, err
		}
		via := ""
		if se.Proxy != nil {
			via = " (its link to headquarters through a proxy on " + se.Proxy.Addr + ")"
		}
		fmt.Fprintf(out, "   %s on %s, leasing from %s%s\n", se.Name, se.Proc.URL, se.HQPool, via)
	}

	fmt.Fprintf(out, "4. every site's line: %d stations x %d devices\n", o.StationsPerSite, o.Devices)
	var wg sync.WaitGroup
	errs := make([]error, len(res.Sites))
	for i, se := range res.Sites {
		wg.Add(1)
		go func() {
			defer wg.Done()
			creds, err := factory.LoadCreds(se.CredsDir, 0)
			if err != nil {
				errs[i] = err
				return
			}
			se.Summary, errs[i] = sim.Simulate(ctx, sim.Config{ServerURL: se.Proc.URL, ServerCAFile: creds.ServerCAFile,
				RootsFile: creds.RootsFile, Stations: creds.Stations, Devices: o.Devices, DevicesOut: &se.devices,
				RunID: strings.ReplaceAll(se.Name, "-", "")})
		}()
	}
	var chaosErr error
	chaos := make(chan struct{})
	go func() {
		defer close(chaos)
		chaosErr = res.chaos(ctx, o, &hqProc)
	}()
	last := res.Sites[len(res.Sites)-1]
	if last.Proxy != nil && o.CutWholeRun {
		last.Proxy.Cut()
		fmt.Fprintf(out, "   %s's link to headquarters cut for its whole line run\n", last.Name)
	} else if last.Proxy != nil {
		last.Proxy.Cut()
		fmt.Fprintf(out, "   %s's link to headquarters cut for %s\n", last.Name, o.CutFor)
		select {
		case <-time.After(o.CutFor):
		case <-ctx.Done():
		}
		if err := last.Proxy.Restore(); err != nil {
			return nil, err
		}
		fmt.Fprintf(out, "   %s's link restored\n", last.Name)
	}
	wg.Wait()
	if last.Proxy != nil && o.CutWholeRun {
		if err := res.catchUp(ctx, last); err != nil {
			return nil, err
		}
		fmt.Fprintf(out, "   %s's link restored: %d events applied at headquarters in %.2fs (%.0f events/s)\n", last.Name,
			res.CatchUpEvents, res.CatchUpSeconds, float64(res.CatchUpEvents)/res.CatchUpSeconds)
	}
	<-chaos
	procs = []*Proc{hqProc}
	for _, se := range res.Sites {
		procs = append(procs, se.Proc)
	}
	if chaosErr != nil {
		return nil, chaosErr
	}
	if res.SiteKills+res.HQKills > 0 {
		fmt.Fprintf(out, "   %d site kills and %d headquarters kills (SIGKILL, restart on the same address)\n", res.SiteKills, res.HQKills)
	}
	for i, se := range res.Sites {
		if errs[i] != nil {
			return nil, fmt.Errorf("%s's line: %w", se.Name, errs[i])
		}
		res.Answered += se.Summary.Devices
		fmt.Fprintf(out, "   %s: %d devices provisioned and verified (%.0f devices/s), %d failed\n", se.Name, se.Summary.Devices,
			se.Summary.DevicesPerSecond, se.Summary.Failed)
	}

	fmt.Fprintln(out, "5. waiting until headquarters applied every site's events")
	for _, se := range res.Sites {
		if err := waitSynced(ctx, se, 120*time.Second); err != nil {
			return nil, err
		}
	}
	for _, p := range procs {
		if err := p.Stop(30 * time.Second); err != nil {
			return nil, fmt.Errorf("a server did not stop cleanly: %w (see %s)", err, p.LogPath)
		}
	}
	procs = nil

	fmt.Fprintln(out, "6. ledger checks and exports")
	for _, e := range append([]*Env{hq}, sitesEnvs(res.Sites)...) {
		rep, err := e.CheckLedger(ctx)
		if err != nil {
			return nil, err
		}
		name := filepath.Base(e.Dir)
		res.Checks[name] = rep
		if err := rep.Err(); err != nil {
			return nil, fmt.Errorf("ledger check of %s: %w", name, err)
		}
		fmt.Fprintf(out, "   ledger check %s: OK, %d IMEIs, %d leases, %d leased SNRs not yet used\n", name, rep.IMEIs, rep.Leases, rep.LeasedUnused)
	}
	if err := res.export(ctx, dir); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "   %d devices answered at the sites, %d at headquarters, %d missing, %d duplicate IMEIs\n",
		res.Answered, res.AtHQ, res.Missing, res.Duplicates)
	if res.Missing != 0 || res.Duplicates != 0 {
		return res, tacerr.New(tacerr.LedgerInvariant, "%d answered devices missing at headquarters, %d duplicate IMEIs", res.Missing, res.Duplicates)
	}
	fmt.Fprintf(out, "\nWhere things are:\n  %-22s %s\n", "headquarters config", hq.ConfigPath)
	for _, se := range res.Sites {
		fmt.Fprintf(out, "  %-22s %s\n", se.Name+" config", se.ConfigPath)
	}
	fmt.Fprintf(out, "  %-22s %s\n  %-22s %s\n", "devices (NDJSON)", filepath.Join(dir, "exports/devices.ndjson"), "CA chain", filepath.Join(dir, "exports/ca-chain.pem"))
	fmt.Fprintf(out, "\nTry: %s --config %s site status\n", CommandName(o.Bin), hq.ConfigPath)
	return res, nil
}

// chaos kills sites (in turn) and HQ with SIGKILL, o.KillEvery apart,
// and restarts each on its address, until o.KillSites and o.KillHQ kills
// are done.
func (r *SitesResult) chaos(ctx context.Context, o SitesOptions, hqProc **Proc) error {
	every := o.KillEvery
	if every <= 0 {
		every = time.Second
	}
	for r.SiteKills < o.KillSites || r.HQKills < o.KillHQ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
		var err error
		if r.SiteKills < o.KillSites && (r.SiteKills <= r.HQKills || r.HQKills >= o.KillHQ) {
			se := r.Sites[r.SiteKills%len(r.Sites)]
			se.Proc.Kill()
			r.SiteKills++
			se.Proc, err = StartServer(ctx, o.Bin, se.ConfigPath, filepath.Join(se.Dir, "server.log"), "--listen", se.Proc.Addr)
		} else {
			(*hqProc).Kill()
			r.HQKills++
			*hqProc, err = StartServer(ctx, o.Bin, r.HQ.ConfigPath, filepath.Join(r.HQ.Dir, "server.log"), "--listen", (*hqProc).Addr)
		}
		if err != nil {
			return fmt.Errorf("restart after a kill: %w", err)
		}
	}
	return nil
}

func sitesEnvs(ss []*SiteEnv) []*Env {
	out := make([]*Env, len(ss))
	for i, s := range ss {
		out[i] = s.Env
	}
	return out
}

// WitnessKeyLabel is the label of headquarters' Ed25519 witness key in
// the sites demo.
const WitnessKeyLabel = "tacline-witness"

// setupWitness makes HQ's witness key in its HSM, names it in HQ's
// audit.witness_key_label, and returns its verifier key for the sites.
func setupWitness(hq *Env) (string, error) {
	tok, err := openToken(hq.Config.HSM)
	if err != nil {
		return "", err
	}
	defer tok.Close()
	if _, err := tok.GenerateEd25519(WitnessKeyLabel); err != nil {
		return "", err
	}
	key, err := tok.Ed25519Signer(WitnessKeyLabel)
	if err != nil {
		return "", err
	}
	c, err := audit.NewCosigner(hq.Config.Audit.Origin, key, nil)
	if err != nil {
		return "", err
	}
	if err := editConfig(hq.ConfigPath, func(doc map[string]any) {
		doc["audit"].(map[string]any)["witness_key_label"] = WitnessKeyLabel
	}); err != nil {
		return "", err
	}
	hq.Config.Audit.WitnessKeyLabel = WitnessKeyLabel
	return c.Verifier().Key(), nil
}

// setupSite makes a site's environment (no pools: they come from
// leases), its issuing CA certified by HQ's device root in the ceremony at
// HQ (`tacline ca certify`, run with bin), and enrolls it at HQ with its
// audit key on the HQ pools (its stations draw from hqPool).
func setupSite(ctx context.Context, hq *Env, bin, dir, name, hqPool string, pools []string) (*SiteEnv, error) {
	certify := func(ctx context.Context, csr []byte) ([]byte, error) {
		return certifyAtHQ(ctx, hq, bin, name, csr)
	}
	env, err := Setup(ctx, Options{Dir: filepath.Join(dir, name), Stations: 1, NoPools: true, CertifyDeviceCA: certify})
	if err != nil {
		return nil, err
	}
	se := &SiteEnv{Env: env, Name: name, HQPool: hqPool}
	origin := name + ".tacline-test-devices.example/audit"
	tok, err := openToken(env.Config.HSM)
	if err != nil {
		return nil, err
	}
	signer, err := tok.Signer(env.Config.Audit.KeyLabel)
	if err != nil {
		tok.Close()
		return nil, err
	}
	pub, ok := signer.Public().(*ecdsa.PublicKey)
	tok.Close()
	if !ok {
		return nil, tacerr.New(tacerr.Internal, "the audit key of %s is not ECDSA", name)
	}
	vkey, err := audit.VerifierKey(origin, pub)
	if err != nil {
		return nil, err
	}
	if err := editConfig(env.ConfigPath, func(doc map[string]any) {
		doc["audit"].(map[string]any)["origin"] = origin
	}); err != nil {
		return nil, err
	}
	hqDB, err := server.OpenLedger(ctx, hq.Config)
	if err != nil {
		return nil, err
	}
	defer hqDB.Close()
	hqTok, err := openToken(hq.Config.HSM)
	if err != nil {
		return nil, err
	}
	defer hqTok.Close()
	if _, err := castore.EnrollSite(ctx, hqDB, hqTok.Token, store.Site{Name: name, Verifier: vkey, Pools: pools}, filepath.Join(hq.Dir, "sites"), "demo"); err != nil {
		return nil, err
	}
	return se, nil
}

// certifyAtHQ is HQ's half of a site's CA ceremony: the site's CSR is
// written to HQ's ca/sites/ and `tacline ca certify` certifies it with
// HQ's device root (its key in HQ's token, opened by that process); it
// returns the certificate followed by the root.
func certifyAtHQ(ctx context.Context, hq *Env, bin, name string, csr []byte) ([]byte, error) {
	d := filepath.Join(hq.Dir, "ca", "sites")
	if err := os.MkdirAll(d, 0o755); err != nil {
		return nil, err
	}
	csrFile, certFile := filepath.Join(d, name+".csr"), filepath.Join(d, name+".pem")
	if err := os.WriteFile(csrFile, csr, 0o644); err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, bin, "--config", hq.ConfigPath, "ca", "certify", "--csr", csrFile, "--out", certFile).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("tacline ca certify at headquarters: %w\n%s", err, out)
	}
	return os.ReadFile(certFile)
}

// configure points the site at HQ (url), takes its first lease, enrolls
// its stations on the HQ pool, and writes its site: section.
func (se *SiteEnv) configure(ctx context.Context, url, hqServerCA, witnessKey string, o SitesOptions) error {
	creds := filepath.Join(filepath.Dir(se.Dir), "hq", "sites", "site-"+se.Name)
	if err := editConfig(se.ConfigPath, func(doc map[string]any) {
		doc["site"] = map[string]any{"name": se.Name, "hq_url": url, "witness_key": witnessKey, "cert_file": filepath.Join(creds, castore.CertFile),
			"key_file": filepath.Join(creds, castore.KeyFile), "ca_file": hqServerCA, "low_water_hours": 0.001, "interval": "500ms",
			"pools": []map[string]any{{"pool": se.HQPool, "lease_size": o.LeaseSize}}}
	}); err != nil {
		return err
	}
	cfg, err := config.Load(se.ConfigPath)
	if err != nil {
		return err
	}
	se.Config = cfg
	client, err := site.NewHTTPClient(cfg.Site.HQURL, se.Name, cfg.Site.CertFile, cfg.Site.KeyFile, cfg.Site.CAFile)
	if err != nil {
		return err
	}
	l, err := client.Lease(ctx, site.LeaseRequestFor(cfg.Site.Pools[0]))
	if err != nil {
		return err
	}
	db, err := server.OpenLedger(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := site.RecordLease(ctx, db, se.Name, l); err != nil {
		return err
	}
	tok, err := openToken(cfg.HSM)
	if err != nil {
		return err
	}
	defer tok.Close()
	for i := 1; i <= o.StationsPerSite; i++ {
		id := fmt.Sprintf("%s-S%02d", se.Name, i)
		if _, err := castore.EnrollStation(ctx, db, tok.Token, castore.StationSpec{ID: id, Factory: l.Factory, Line: fmt.Sprintf("L%d", i),
			Pools: []string{se.HQPool}, Product: l.Product}, se.CredsDir, "demo"); err != nil {
			return err
		}
	}
	return nil
}

// editConfig rewrites a configuration file through fn.
func editConfig(path string, fn func(map[string]any)) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return err
	}
	fn(doc)
	out, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	return os.WriteFile(path, append([]byte("# tacline configuration written by `tacline demo --sites` (development only).\n"), out...), 0o644)
}

// waitConfirmed waits until HQ recorded a sync of the site after since.
func waitConfirmed(ctx context.Context, hq *Env, se *SiteEnv, since time.Time, timeout time.Duration) error {
	db, err := store.Open(ctx, hq.Config.Database)
	if err != nil {
		return err
	}
	defer db.Close()
	return pollUntil(ctx, timeout, func() (string, error) {
		st, err := db.SiteByName(ctx, se.Name)
		if err != nil || st.LastSync.After(since) {
			return "", err
		}
		return fmt.Sprintf("%s did not sync with headquarters within %s; see %s", se.Name, timeout, se.Proc.LogPath), nil
	})
}

// catchUp restores the cut site's link and measures how long HQ takes to
// apply what it had pending.
func (r *SitesResult) catchUp(ctx context.Context, se *SiteEnv) error {
	db, err := store.Open(ctx, se.Config.Database)
	if err != nil {
		return err
	}
	defer db.Close()
	if r.CatchUpEvents, err = db.SiteOutboxPending(ctx); err != nil {
		return err
	}
	start := time.Now()
	if err := se.Proxy.Restore(); err != nil {
		return err
	}
	if err := pendingZero(ctx, db, se, 5*time.Minute); err != nil {
		return err
	}
	r.CatchUpSeconds = time.Since(start).Seconds()
	return nil
}

// waitSynced waits until the site's outbox holds no pending event.
func waitSynced(ctx context.Context, se *SiteEnv, timeout time.Duration) error {
	db, err := store.Open(ctx, se.Config.Database)
	if err != nil {
		return err
	}
	defer db.Close()
	return pendingZero(ctx, db, se, timeout)
}

// pendingZero waits until the site's outbox in db holds no pending event.
func pendingZero(ctx context.Context, db *store.DB, se *SiteEnv, timeout time.Duration) error {
	return pollUntil(ctx, timeout, func() (string, error) {
		n, err := db.SiteOutboxPending(ctx)
		if err != nil || n == 0 {
			return "", err
		}
		return fmt.Sprintf("%s still has %d events not applied at headquarters after %s; see %s", se.Name, n, timeout, se.Proc.LogPath), nil
	})
}

// pollUntil calls check every 10ms until it returns no reason to wait (or
// an error); after timeout the last reason becomes an unavailable error.
func pollUntil(ctx context.Context, timeout time.Duration, check func() (string, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		why, err := check()
		if err != nil || why == "" {
			return err
		}
		if time.Now().After(deadline) {
			return tacerr.New(tacerr.Unavailable, "%s", why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// export writes devices.ndjson from HQ's ledger and ca-chain.pem, and
// counts what HQ holds against what the sites answered.
func (r *SitesResult) export(ctx context.Context, dir string) error {
	// What the sites answered (the stations verified each certificate).
	answered := map[string]string{} // site/serial -> certificate (PEM)
	for _, se := range r.Sites {
		for _, line := range bytes.Split(se.devices.Bytes(), []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			var d sim.DeviceRecord
			if err := json.Unmarshal(line, &d); err != nil {
				return err
			}
			answered[se.Name+"/"+d.DeviceSerial] = d.Certificate
		}
	}
	db, err := store.Open(ctx, r.HQ.Config.Database)
	if err != nil {
		return err
	}
	defer db.Close()
	f, err := os.Create(filepath.Join(dir, "exports", "devices.ndjson"))
	if err != nil {
		return err
	}
	defer f.Close()
	enc := json.NewEncoder(f)
	atHQ := map[string]bool{}
	seen := map[string]bool{}
	err = db.SiteDevices(ctx, func(d store.SiteDevice) error {
		ims := make([]string, len(d.IMEIs))
		for i, m := range d.IMEIs {
			ims[i] = m.String()
			if seen[ims[i]] {
				r.Duplicates++
			}
			seen[ims[i]] = true
		}
		k := d.Site + "/" + d.DeviceSerial
		atHQ[k] = true
		r.AtHQ++
		return enc.Encode(map[string]any{"site": d.Site, "device_serial": d.DeviceSerial, "imeis": ims, "cert_serial": d.CertSerial,
			"state": d.State, "certificate": answered[k]})
	})
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	for k := range answered {
		if !atHQ[k] {
			r.Missing++
		}
	}
	// The device root (HQ's) and every site's issuing CA it certified.
	chain := []string{filepath.Join(r.HQ.Dir, "ca/root.pem")}
	for _, se := range r.Sites {
		chain = append(chain, filepath.Join(se.Dir, "ca/issuing.pem"))
	}
	return concatFiles(filepath.Join(dir, "exports", "ca-chain.pem"), chain...)
}

func concatFiles(dst string, srcs ...string) error {
	var b []byte
	for _, s := range srcs {
		d, err := os.ReadFile(s)
		if err != nil {
			return err
		}
		b = append(b, d...)
	}
	return os.WriteFile(dst, b, 0o644)
}
