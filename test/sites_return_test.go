package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/imei"
)

// TestSiteReleasesLeaseWithProof: after a sites run, HQ and site 1 run
// again as processes; `tacline lease return` at HQ asks site 1 for its
// lease; the site releases it (closed at once, lease.released in its
// signed log) and ships the release in its next sync; HQ hands the SNRs
// the site never reserved back to the pool, and `tacline lease grant` for
// site 2 takes them before the high-water mark. No re-leased SNR is on a
// device; every ledger checks OK and accounts for the handed-back SNRs.
func TestSiteReleasesLeaseWithProof(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sites")
	const devices = 3
	sitesRun(t, dir, devices, "--cut-for", "-1s")
	hqCfg := filepath.Join(dir, "hq", "tacline.yaml")
	site1 := filepath.Join(dir, "site-1")
	ctx := context.Background()
	hq, err := devenv.StartServer(ctx, taclineBin, hqCfg, filepath.Join(dir, "hq", "server2.log"), "--listen", hqAddr(t, site1))
	if err != nil {
		t.Fatal(err)
	}
	defer hq.Stop(30 * time.Second)
	s1, err := devenv.StartServer(ctx, taclineBin, filepath.Join(site1, "tacline.yaml"), filepath.Join(site1, "server2.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Stop(30 * time.Second)

	leases := func() []wire.Lease {
		t.Helper()
		r := tacline(t, time.Minute, "--config", hqCfg, "lease", "list", "--site", "site-1", "--json")
		if r.code != 0 {
			t.Fatalf("lease list: %s%s", r.stdout, r.stderr)
		}
		var out []wire.Lease
		for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			var l wire.Lease
			if err := json.Unmarshal([]byte(line), &l); err != nil {
				t.Fatal(err)
			}
			out = append(out, l)
		}
		return out
	}
	ls := leases()
	if len(ls) != 1 || ls[0].Bound != 2*devices {
		t.Fatalf("site-1's leases before the return: %+v", ls)
	}
	l := ls[0]
	id := strconv.FormatInt(l.ID, 10)
	if r := tacline(t, time.Minute, "--config", hqCfg, "lease", "return", id); r.code != 0 || !strings.Contains(r.stdout, "return requested") {
		t.Fatalf("lease return: %d %s%s", r.code, r.stdout, r.stderr)
	}
	deadline := time.Now().Add(60 * time.Second)
	for l.ReturnedAt == nil {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(s1.LogPath)
			t.Fatalf("site-1 never released lease %d: %+v\n%s", l.ID, l, b)
		}
		time.Sleep(100 * time.Millisecond)
		l = leases()[0]
	}
	size := mustAtoi(t, l.SNREnd) - mustAtoi(t, l.SNRStart) + 1
	if l.Released != int64(size-2*devices) || l.Unused != 0 || l.Bound != 2*devices || l.Voided != 0 {
		t.Fatalf("released lease %+v: want %d SNRs handed back, none voided", l, size-2*devices)
	}
	mark := mustAtoi(t, l.SNRStart) + 2*devices

	// Site 2 may lease pool-01 too: its next lease comes from what site 1
	// handed back, from the mark.
	r := tacline(t, time.Minute, "--config", hqCfg, "lease", "grant", "--site", "site-2", "--pool", "pool-01", "--size", "50")
	want := fmt.Sprintf(`SNRs %06d-%06d of pool pool-01 .* \(SNRs released from lease %d\)`, mark, mark+49, l.ID)
	if r.code != 0 || !regexp.MustCompile(want).MatchString(r.stdout) {
		t.Fatalf("lease grant to site-2: %d %s%s, want %q", r.code, r.stdout, r.stderr, want)
	}
	grant := r.stdout
	// No re-leased SNR is on a device.
	b, err := os.ReadFile(filepath.Join(dir, "exports", "devices.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var d struct {
			IMEIs []string `json:"imeis"`
		}
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatal(err)
		}
		for _, s := range d.IMEIs {
			m, err := imei.Parse(s)
			if err != nil {
				t.Fatal(err)
			}
			if m.TAC() == devenv.FirstTAC && int(m.SNR()) >= mark && int(m.SNR()) < mark+50 {
				t.Fatalf("IMEI %s of a device was re-leased", s)
			}
		}
	}
	r = tacline(t, time.Minute, "--config", hqCfg, "ledger", "check", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf(`"released_unleased":%d`, size-2*devices-50)) {
		t.Fatalf("HQ ledger check: %d %s%s", r.code, r.stdout, r.stderr)
	}
	r = tacline(t, time.Minute, "--config", hqCfg, "site", "status", "--site", "site-1", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf(`"released":%d,"relet":50`, size-2*devices)) || !strings.Contains(r.stdout, `"consistent":true`) {
		t.Fatalf("HQ's status of site-1: %s%s", r.stdout, r.stderr)
	}
	if err := s1.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	r = tacline(t, time.Minute, "--config", filepath.Join(site1, "tacline.yaml"), "site", "status", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"released":true`) || !strings.Contains(r.stdout, `"pending_events":0`) {
		t.Fatalf("site-1's own status: %s%s", r.stdout, r.stderr)
	}
	if r := tacline(t, time.Minute, "--config", filepath.Join(site1, "tacline.yaml"), "ledger", "check"); r.code != 0 {
		t.Fatalf("site-1 ledger check: %s%s", r.stdout, r.stderr)
	}

	// Site 2 never fetched its lease: returned without proof, its 50 SNRs
	// are voided (in chunks, with a progress line), and HQ's ledger checks.
	l2 := regexp.MustCompile(`^lease (\d+):`).FindStringSubmatch(grant)
	r = tacline(t, time.Minute, "--config", hqCfg, "lease", "return", "--force", l2[1])
	if r.code != 0 || !strings.Contains(r.stdout, "50 unreported SNRs voided") || !strings.Contains(r.stderr, "return: 50/50 SNRs (100.0%)") {
		t.Fatalf("lease return --force: %d %s%s", r.code, r.stdout, r.stderr)
	}
	if r := tacline(t, time.Minute, "--config", hqCfg, "ledger", "check"); r.code != 0 {
		t.Fatalf("HQ ledger check after the forced return: %s%s", r.stdout, r.stderr)
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
