package test

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/config"
	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/site"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// TestSitesDemo runs `tacline demo --sites 2` (headquarters and two sites
// as processes, the second site's link cut for a second while it
// provisions) and checks what it left: every answered device at HQ once,
// each with its site; every ledger sound; HQ's status of each site
// consistent; HQ's DIRBS registration list holding every bound IMEI of
// every site; the CA chain with HQ's root and both sites' CAs.
//
// TACLINE_SITES_CUT_DEVICES=N runs the long version instead: N
// devices per site with site 2's link cut for its whole line run (minutes
// at N = 12,000), then the catch-up; the same checks follow.
func TestSitesDemo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sites")
	if n := envInt(t, "TACLINE_SITES_CUT_DEVICES", 0); n > 0 {
		r := sitesRun(t, dir, n, "--cut-whole-run")
		t.Logf("long cut run:\n%s", r.stdout)
		return
	}
	sitesRun(t, dir, 5, "--cut-for", "1s")
}

// TestSitesKilled: a site and HQ are each killed with SIGKILL while the
// lines provision and sync (the long version, 20 kills each, is recorded
// in docs/sites.md); nothing is lost or doubled.
//
// TACLINE_SITES_KILLS=K kills each K times instead (the run is
// K = 20, with 1,000 devices per site and a 10 s cut).
func TestSitesKilled(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sites")
	kills, devices, cut := 1, 40, "500ms"
	if k := envInt(t, "TACLINE_SITES_KILLS", 0); k > 0 {
		kills, devices, cut = k, 50*k, "10s"
	}
	k := strconv.Itoa(kills)
	r := sitesRun(t, dir, devices, "--cut-for", cut, "--kill-sites", k, "--kill-hq", k, "--kill-every", "300ms")
	if !strings.Contains(r.stdout, k+" site kills and "+k+" headquarters kills") {
		t.Errorf("kills not reported:\n%s", r.stdout)
	}
	if kills > 1 {
		t.Logf("kill run:\n%s", r.stdout)
	}
}

// envInt reads a positive integer from the environment, or def when unset.
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a whole number", name, v)
	}
	return n
}

// TestSitesLeaseDryWhileCut: the cut site's lease runs dry while HQ is
// unreachable: it answers lease_exhausted (retryable), its stations retry,
// and once the link is back it gets the next lease and finishes.
func TestSitesLeaseDryWhileCut(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sites")
	sitesRun(t, dir, 20, "--cut-for", "2s", "--lease-size", "16")
	b, err := os.ReadFile(filepath.Join(dir, "site-2", "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("lease_exhausted")) {
		t.Fatalf("site-2 never answered lease_exhausted while cut off")
	}
}

// sitesRun runs `tacline demo --sites 2 --stations 1` with devices per
// station and the extra arguments, and checks what it left.
func sitesRun(t *testing.T, dir string, devices int, extra ...string) result {
	t.Helper()
	args := append([]string{"demo", "--sites", "2", "--stations", "1", "--devices", strconv.Itoa(devices), "--dir", dir}, extra...)
	demo := tacline(t, 4*time.Minute+time.Duration(devices)*30*time.Millisecond, args...)
	if demo.code != 0 {
		t.Fatalf("tacline demo --sites exited %d\nstdout:\n%s\nstderr:\n%s", demo.code, demo.stdout, demo.stderr)
	}
	want := fmt.Sprintf("%d devices answered at the sites, %d at headquarters, 0 missing, 0 duplicate IMEIs", 2*devices, 2*devices)
	if !strings.Contains(demo.stdout, want) {
		t.Errorf("demo summary, want %q:\n%s", want, demo.stdout)
	}
	for _, cfg := range []string{"hq", "site-1", "site-2"} {
		if r := tacline(t, time.Minute, "--config", filepath.Join(dir, cfg, "tacline.yaml"), "ledger", "check"); r.code != 0 {
			t.Fatalf("ledger check of %s exited %d\n%s%s", cfg, r.code, r.stdout, r.stderr)
		}
	}
	hqCfg := filepath.Join(dir, "hq", "tacline.yaml")

	// devices.ndjson: one line per device, with its site, no IMEI twice.
	f, err := os.Open(filepath.Join(dir, "exports", "devices.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bound := map[string]string{} // 14-digit IMEI -> site
	perSite := map[string]int{}
	certDir := t.TempDir()
	var certFiles []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var d struct {
			Site        string   `json:"site"`
			State       string   `json:"state"`
			IMEIs       []string `json:"imeis"`
			Serial      string   `json:"device_serial"`
			Certificate string   `json:"certificate"`
		}
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatal(err)
		}
		perSite[d.Site]++
		cf := filepath.Join(certDir, d.Site+"-"+d.Serial+".pem")
		if err := os.WriteFile(cf, []byte(d.Certificate), 0o644); err != nil {
			t.Fatal(err)
		}
		certFiles = append(certFiles, cf)
		for _, s := range d.IMEIs {
			m, err := imei.Parse(s)
			if err != nil {
				t.Fatal(err)
			}
			k := m.String()[:14]
			if _, dup := bound[k]; dup {
				t.Fatalf("IMEI %s twice in devices.ndjson", s)
			}
			bound[k] = d.Site
		}
	}
	if perSite["site-1"] != devices || perSite["site-2"] != devices || len(bound) != 4*devices {
		t.Fatalf("devices per site %v, %d IMEIs", perSite, len(bound))
	}

	// HQ's status of each site.
	r := tacline(t, time.Minute, "--config", hqCfg, "site", "status", "--json")
	if r.code != 0 {
		t.Fatalf("site status: %s%s", r.stdout, r.stderr)
	}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var st struct {
			Site       string `json:"site"`
			Bound      int    `json:"bound"`
			Consistent bool   `json:"consistent"`
		}
		if err := json.Unmarshal([]byte(line), &st); err != nil {
			t.Fatal(err)
		}
		if st.Bound != 2*devices || !st.Consistent {
			t.Errorf("HQ's status of %s: %s", st.Site, line)
		}
	}

	// Each site's own view: nothing pending, its leases.
	for _, name := range []string{"site-1", "site-2"} {
		r := tacline(t, time.Minute, "--config", filepath.Join(dir, name, "tacline.yaml"), "site", "status", "--json")
		var st struct {
			Site    string            `json:"site"`
			Leases  []json.RawMessage `json:"leases"`
			Pending int               `json:"pending_events"`
		}
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil || st.Site != name || len(st.Leases) == 0 || st.Pending != 0 {
			t.Fatalf("%s's own status: %s%s", name, r.stdout, r.stderr)
		}
	}

	// HQ's DIRBS registration list holds every bound IMEI of every site.
	zipPath := filepath.Join(t.TempDir(), "list.zip")
	if r := tacline(t, time.Minute, "--config", hqCfg, "export", "registration-list", "-o", zipPath); r.code != 0 {
		t.Fatalf("registration list: %s%s", r.stdout, r.stderr)
	}
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var csv []byte
	for _, zf := range zr.File {
		rc, err := zf.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		csv = append(csv, b...)
	}
	for k := range bound {
		if !bytes.Contains(csv, []byte(k)) {
			t.Fatalf("IMEI %s of %s is not in HQ's DIRBS registration list", k, bound[k])
		}
	}

	// The CA chain: HQ's device root and each site's issuing CA, which
	// HQ's root certified in the ceremony at HQ; every site's device
	// certificates verify against it alone (one self-signed root).
	chainFile := filepath.Join(dir, "exports", "ca-chain.pem")
	certs, err := os.ReadFile(chainFile)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := ca.ParseChainPEM(certs)
	if err != nil || len(chain) != 3 {
		t.Fatalf("ca-chain.pem holds %d certificates (%v), want HQ's root and two sites' issuing CAs", len(chain), err)
	}
	for _, c := range chain[1:] {
		if !bytes.Equal(c.RawIssuer, chain[0].RawSubject) || !bytes.Equal(c.AuthorityKeyId, chain[0].SubjectKeyId) {
			t.Fatalf("site CA %q is not certified by HQ's root %q", c.Subject, chain[0].Subject)
		}
	}
	out, err := exec.Command("openssl", append([]string{"verify", "-x509_strict", "-CAfile", chainFile}, certFiles...)...).CombinedOutput()
	if err != nil || bytes.Count(out, []byte(": OK\n")) != len(certFiles) {
		t.Fatalf("openssl verify -x509_strict of %d device certificates against ca-chain.pem: %v\n%s", len(certFiles), err, out)
	}
	return demo
}

// TestSiteRestoredFromOldBackup: after a run, site 1's ledger is replaced
// by its copy from before its line ran (an old backup). The server's own
// guard (the published checkpoint next to the HSM token, docs/operations.md)
// refuses to start. When that file is old too (the whole machine restored
// from an image) but HQ's cosigned checkpoint beside it is not, the site
// starts and, with HQ down, refuses to issue (site_not_current). When that
// file is lost as well, HQ has verified more of the site's log than the
// restored ledger holds, so it refuses to issue instead of handing out
// SNRs it already issued.
func TestSiteRestoredFromOldBackup(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sites")
	sitesRun(t, dir, 3, "--cut-for", "-1s", "--keep-old-ledgers")
	site1 := filepath.Join(dir, "site-1")
	old, err := os.ReadFile(filepath.Join(site1, "ledger.db.old"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ledger.db-wal", "ledger.db-shm"} {
		os.Remove(filepath.Join(site1, f))
	}
	if err := os.WriteFile(filepath.Join(site1, "ledger.db"), old, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := devenv.StartServer(ctx, taclineBin, filepath.Join(site1, "tacline.yaml"), filepath.Join(site1, "server1.log")); err == nil {
		t.Fatal("the restored site started despite its published checkpoint")
	}
	if b, _ := os.ReadFile(filepath.Join(site1, "server1.log")); !bytes.Contains(b, []byte("older than a published checkpoint")) {
		t.Fatalf("the restored site did not name the published checkpoint:\n%s", b)
	}
	creds, err := factory.LoadCreds(filepath.Join(site1, "stations"), 0)
	if err != nil {
		t.Fatal(err)
	}
	// refused waits until the site's log says why it refuses, then checks
	// that a station's provisioning is answered 503 site_not_current.
	refused := func(s *devenv.Proc, log, why string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			b, _ := os.ReadFile(log)
			if bytes.Contains(b, []byte(why)) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the restored site never said %q:\n%s", why, b)
			}
			time.Sleep(100 * time.Millisecond)
		}
		st := creds.Stations[0]
		c, err := factory.NewClient(factory.ClientConfig{ServerURL: s.URL, CertFile: st.CertFile, KeyFile: st.KeyFile, CAFile: creds.ServerCAFile, MaxRetries: -1})
		if err != nil {
			t.Fatal(err)
		}
		dev, err := factory.NewDevice("restored-1")
		if err != nil {
			t.Fatal(err)
		}
		csr, err := dev.CSR()
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Provision(ctx, wire.ProvisionRequest{DeviceSerial: "restored-1", Product: st.Product, CSR: string(csr)})
		var ae *factory.APIError
		if !errors.As(err, &ae) || ae.Status != 503 || ae.Problem.Code != string(tacerr.SiteNotCurrent) || !ae.Problem.Retryable {
			t.Fatalf("the restored site answered %v, want 503 site_not_current", err)
		}
	}
	// The published checkpoint file restored too, but HQ's cosigned
	// checkpoint beside it survived: with HQ down, the site starts and
	// refuses to issue, naming HQ's cosigned size.
	if err := os.Remove(filepath.Join(site1, "hsm", "published-checkpoint")); err != nil {
		t.Fatal(err)
	}
	s0, err := devenv.StartServer(ctx, taclineBin, filepath.Join(site1, "tacline.yaml"), filepath.Join(site1, "server2.log"))
	if err != nil {
		t.Fatal(err)
	}
	refused(s0, filepath.Join(site1, "server2.log"), "headquarters cosigned size")
	s0.Stop(30 * time.Second)
	// The whole machine restored from an image older than both files: the
	// local guards cannot see it; HQ's verified size does.
	if err := os.Remove(filepath.Join(site1, "hsm", "published-checkpoint.cosigned")); err != nil {
		t.Fatal(err)
	}
	hq, err := devenv.StartServer(ctx, taclineBin, filepath.Join(dir, "hq", "tacline.yaml"), filepath.Join(dir, "hq", "server2.log"),
		"--listen", hqAddr(t, site1))
	if err != nil {
		t.Fatal(err)
	}
	defer hq.Stop(30 * time.Second)
	s1, err := devenv.StartServer(ctx, taclineBin, filepath.Join(site1, "tacline.yaml"), filepath.Join(site1, "server3.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Stop(30 * time.Second)
	refused(s1, filepath.Join(site1, "server3.log"), "headquarters verified")
}

// hqAddr is the address (host:port) of HQ in the site's configuration:
// HQ restarted after a demo run listens there again.
func hqAddr(t *testing.T, siteDir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(siteDir, "tacline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Site struct {
			HQURL string `yaml:"hq_url"`
		} `yaml:"site"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(cfg.Site.HQURL, "https://")
}

// TestSiteReportsIMEIOutsideLeases: a site (its real certificate, its
// checkpoint signed by its HSM key, consistent with what HQ verified)
// reports a device bound to an IMEI outside its leases: the HQ process
// refuses the batch (lease_violation), writes nothing of it, and marks the
// site inconsistent.
func TestSiteReportsIMEIOutsideLeases(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sites")
	sitesRun(t, dir, 3, "--cut-for", "-1s")
	ctx := context.Background()
	hq, err := devenv.StartServer(ctx, taclineBin, filepath.Join(dir, "hq", "tacline.yaml"), filepath.Join(dir, "hq", "server2.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer hq.Stop(30 * time.Second)

	cfg, err := config.Load(filepath.Join(dir, "site-1", "tacline.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := hsm.Open(cfg.HSM)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	key, err := tok.Signer(cfg.Audit.KeyLabel)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, cfg.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l, err := audit.New(db, cfg.Audit, key)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	client, err := site.NewHTTPClient(hq.URL, "site-1", cfg.Site.CertFile, cfg.Site.KeyFile, cfg.Site.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	st, err := client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := audit.ConsistencyProof(ctx, db, st.VerifiedSize, cp.Size)
	if err != nil {
		t.Fatal(err)
	}
	var p64 []string
	for _, h := range proof {
		p64 = append(p64, base64.StdEncoding.EncodeToString(h[:]))
	}
	outside, err := imei.New(devenv.FirstTAC, 249999) // pool-01's last SNR: never leased in this run
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.Sync(ctx, wire.SiteSyncRequest{Checkpoint: string(cp.Note), ProofFrom: st.VerifiedSize, Proof: p64,
		Events: []wire.SiteEvent{{Seq: st.AppliedSeq + 1000, Type: "imei.bound", Time: time.Now().UTC(), IMEIs: []string{outside.String()},
			DeviceSerial: "clone-1", CertSerial: "0bad"}}})
	if !tacerr.Is(err, tacerr.LeaseViolation) {
		t.Fatalf("an IMEI outside the site's leases: %v", err)
	}
	after, err := client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.Consistent || after.Refusals != 1 || after.Bound != st.Bound || after.AppliedSeq != st.AppliedSeq {
		t.Fatalf("HQ's status after the refusal: %+v (before %+v)", after, st)
	}
	if r := tacline(t, time.Minute, "--config", filepath.Join(dir, "hq", "tacline.yaml"), "ledger", "check"); r.code != 0 {
		t.Fatalf("HQ ledger check: %s%s", r.stdout, r.stderr)
	}
}
