package test

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/imei"
)

// TestSitesDemo runs `tacline demo --sites 2` (headquarters and two sites
// as processes, the second site's link cut for a second while it
// provisions) and checks what it left: every answered device at HQ once,
// each with its site; every ledger sound; HQ's status of each site
// consistent; HQ's DIRBS registration list holding every bound IMEI of
// every site; the CA chain with HQ's root and both sites' CAs.
func TestSitesDemo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sites")
	sitesRun(t, dir, 5, "--cut-for", "1s")
}

// TestSitesKilled: a site and HQ are each killed with SIGKILL while the
// lines provision and sync (the long version, 20 kills each, is recorded
// in docs/sites.md); nothing is lost or doubled.
func TestSitesKilled(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sites")
	r := sitesRun(t, dir, 40, "--cut-for", "500ms", "--kill-sites", "1", "--kill-hq", "1", "--kill-every", "300ms")
	if !strings.Contains(r.stdout, "1 site kills and 1 headquarters kills") {
		t.Errorf("kills not reported:\n%s", r.stdout)
	}
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
	demo := tacline(t, 4*time.Minute, args...)
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
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var d struct {
			Site  string   `json:"site"`
			State string   `json:"state"`
			IMEIs []string `json:"imeis"`
		}
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatal(err)
		}
		perSite[d.Site]++
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

	// The CA chain: HQ's root and each site's issuing CA and root.
	pemData, err := os.ReadFile(filepath.Join(dir, "exports", "ca-chain.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(pemData, []byte("-----BEGIN CERTIFICATE-----")); n != 5 {
		t.Fatalf("ca-chain.pem holds %d certificates, want 5", n)
	}
	return demo
}
