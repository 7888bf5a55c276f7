package console_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/lifecycle"
	"github.com/tacline/tacline/store"
)

// The browser test: one real server (SoftHSM2 token, SQLite ledger, mutual
// TLS), one headless Chromium, subtests in order. Chromium cannot be
// handed a client certificate without a system-wide policy, so the test
// puts a small reverse proxy per identity in front of the server: the
// browser speaks plain HTTP to 127.0.0.1, the proxy speaks mutual TLS to
// the server with that identity's certificate (or none). Each proxy keeps
// the browser's Host header, so the console's same-origin checks see the
// browser's origin.
//
// Set TACLINE_CONSOLE_SHOTS to a directory to write a PNG screenshot of each
// page there (docs/console/ holds the ones in the documentation).

const axePath = "testdata/axe/node_modules/axe-core/axe.min.js"

func TestBrowser(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("the browser test needs Chromium: run `make tools` (scripts/ensure-tools.sh installs Debian's chromium): %v", err)
	}
	axe, err := os.ReadFile(axePath)
	if err != nil {
		t.Fatalf("the browser test needs axe-core: run `make tools` (npm ci in console/testdata/axe): %v", err)
	}
	bin := taclineBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	env, err := devenv.Setup(ctx, devenv.Options{Dir: filepath.Join(t.TempDir(), "env"), Stations: 2})
	if err != nil {
		t.Fatal(err)
	}
	// Three public lookups, then the limit (the check subtest reaches it).
	env.Config.Authenticity.API.LookupRate, env.Config.Authenticity.API.LookupBurst = 0.001, 3
	srv, serverURL, stop, err := devenv.ServeInProcess(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	devices, err := devenv.ProvisionDevices(ctx, env, serverURL, 3, filepath.Join(env.Dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	if len(devices) != 6 {
		t.Fatalf("provisioned %d devices, want 6", len(devices))
	}
	if _, err := srv.Audit.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}

	ident := func(role string) string { return filepath.Join(env.IdentitiesDir, "person-"+role) }
	operator := proxy(t, env, serverURL, ident("operator"))
	auditor := proxy(t, env, serverURL, ident("auditor"))
	regulator := proxy(t, env, serverURL, ident("regulator"))
	station := proxy(t, env, serverURL, filepath.Join(env.CredsDir, env.Stations[0]))
	public := proxy(t, env, serverURL, "")

	actx, acancel := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.Flag("disable-gpu", true))...)
	defer acancel()
	b, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	if err := chromedp.Do(b, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatal(err)
	}
	shots := os.Getenv("TACLINE_CONSOLE_SHOTS")
	// open loads a page, checks its status, runs axe-core in it and
	// (with TACLINE_CONSOLE_SHOTS) takes its screenshot.
	open := func(t *testing.T, u string, status int64, shot string) {
		t.Helper()
		resp, err := chromedp.Run(b, chromedp.NavigateResponse(u))
		if err != nil {
			t.Fatalf("open %s: %v", u, err)
		}
		if resp.Status != status {
			t.Fatalf("open %s: status %d, want %d", u, resp.Status, status)
		}
		checkHeaders(t, resp.Headers)
		page(t, b, axe, shots, shot)
	}

	t.Run("station and no certificate are refused with a page that says why", func(t *testing.T) {
		open(t, station+"/console/", 403, "refused-station")
		wantText(t, b, "h1", "Station certificates cannot use the console")
		open(t, public+"/console/", 401, "")
		wantText(t, b, "h1", "A client certificate is needed")
		open(t, auditor+"/console/regulator", 403, "")
		wantText(t, b, "h1", "This page is not for your role")
	})

	t.Run("search finds a provisioned device with its IMEIs and verified proof", func(t *testing.T) {
		d := devices[0]
		open(t, operator+"/console/search", 200, "")
		if err := chromedp.Do(b, chromedp.SendKeys(chromedp.CSS("#q"), d.Serial)); err != nil {
			t.Fatal(err)
		}
		submit(t, b, "form[role=search] button", 200)
		got := evalJSON[[]string](t, b, `[...document.querySelectorAll("#imeis tbody tr")].map(tr => tr.dataset.imei)`)
		if fmt.Sprint(got) != fmt.Sprint(d.IMEIs) {
			t.Fatalf("search shows IMEIs %v, want %v", got, d.IMEIs)
		}
		wantText(t, b, "#device [data-k=state]", "BOUND")
		wantText(t, b, "#proof", "Audit inclusion proofs verified")

		page(t, b, axe, shots, "search")
		// An IMEI with spaces finds the same device.
		spaced := d.IMEIs[1][:8] + " " + d.IMEIs[1][8:14] + " " + d.IMEIs[1][14:]
		open(t, operator+"/console/search?q="+url.QueryEscape(spaced), 200, "")
		wantText(t, b, "#h-device", d.Serial)
		// Something that is neither says so, with 404.
		open(t, operator+"/console/search?q=no-such-device", 404, "")
		wantText(t, b, ".answer.bad", "No device with serial no-such-device")
	})

	t.Run("a form without its CSRF token changes nothing", func(t *testing.T) {
		d := devices[2]
		open(t, operator+"/console/revoke?serial="+d.Serial, 200, "")
		if err := chromedp.Do(b, chromedp.Click(chromedp.CSS("#confirm"))); err != nil {
			t.Fatal(err)
		}
		evalJSON[bool](t, b, `document.querySelector("input[name=csrf]").remove(); true`)
		submit(t, b, "#do", 403)
		wantText(t, b, ".problem", "security token is missing")
		open(t, operator+"/console/void?imei="+d.IMEIs[0], 200, "")
		evalJSON[bool](t, b, `document.querySelector("input[name=csrf]").value = "forged"; document.querySelector("#confirm").checked = true; true`)
		submit(t, b, "#do", 403)
		wantText(t, b, ".problem", "not valid for your certificate")
		if st := deviceState(t, srv.DB, d.Serial); st != store.StateBound {
			t.Fatalf("device %s is %s after refused forms, want BOUND", d.Serial, st)
		}
		// Another site's page cannot post the form, even with a valid
		// token: the browser says where the form came from, the console
		// refuses it.
		open(t, operator+"/console/revoke?serial="+d.Serial, 200, "")
		token := evalJSON[string](t, b, `document.querySelector("input[name=csrf]").value`)
		evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, `<!doctype html><title>elsewhere</title><form method="post" action="%s/console/revoke">
<input name="csrf" value="%s"><input name="serial" value="%s"><input name="reason" value="stolen"><input name="confirm" value="yes">
<button id="go">go</button></form>`, operator, token, d.Serial)
		}))
		defer evil.Close()
		if err := chromedp.Do(b, chromedp.Navigate(evil.URL)); err != nil {
			t.Fatal(err)
		}
		submit(t, b, "#go", 403)
		wantText(t, b, ".problem", "another site")
		if st := deviceState(t, srv.DB, d.Serial); st != store.StateBound {
			t.Fatalf("device %s is %s after a post from another site, want BOUND", d.Serial, st)
		}
		// Without the confirmation box ticked, nothing happens either.
		open(t, operator+"/console/revoke?serial="+d.Serial, 200, "")
		evalJSON[bool](t, b, `document.querySelector("#confirm-form").noValidate = true; true`)
		submit(t, b, "#do", 422)
		if st := deviceState(t, srv.DB, d.Serial); st != store.StateBound {
			t.Fatalf("device %s is %s after an unconfirmed form, want BOUND", d.Serial, st)
		}
	})

	t.Run("revoke and void through the page change the ledger", func(t *testing.T) {
		d := devices[0]
		open(t, operator+"/console/revoke?serial="+d.Serial, 200, "revoke-confirm")
		if err := chromedp.Do(b, chromedp.SetValue(chromedp.CSS("#reason"), "stolen"), chromedp.Click(chromedp.CSS("#confirm"))); err != nil {
			t.Fatal(err)
		}
		submit(t, b, "#do", 200)
		wantText(t, b, ".flash", "The device was revoked.")
		if st := deviceState(t, srv.DB, d.Serial); st != store.StateRevoked {
			t.Fatalf("device %s is %s after the revocation, want REVOKED", d.Serial, st)
		}
		v := devices[1]
		open(t, operator+"/console/void?imei="+v.IMEIs[0], 200, "")
		if err := chromedp.Do(b, chromedp.SetValue(chromedp.CSS("#reason"), "scrapped"), chromedp.Click(chromedp.CSS("#confirm"))); err != nil {
			t.Fatal(err)
		}
		submit(t, b, "#do", 200)
		wantText(t, b, ".flash", "voided")
		for _, s := range v.IMEIs {
			m, _ := imei.Parse(s)
			rec, err := srv.DB.LookupIMEI(ctx, m)
			if err != nil || rec.State != store.StateVoided || rec.Reason != "scrapped" {
				t.Fatalf("IMEI %s after the void: %+v, %v; want VOIDED (scrapped)", s, rec, err)
			}
		}
	})

	t.Run("an open search page follows a revocation made through the API", func(t *testing.T) {
		d := devices[5]
		open(t, operator+"/console/search?q="+url.QueryEscape(d.Serial), 200, "")
		wantText(t, b, "#device [data-k=state]", "BOUND")
		c, err := devenv.RoleClient(env, "operator")
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Post(serverURL+"/v1/devices/"+d.Serial+"/revoke", "application/json", strings.NewReader(`{"reason":"cloned"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("revoke through the API: %s", resp.Status)
		}
		if _, err := chromedp.Run(b, chromedp.Poll[bool](`document.querySelector("#device [data-k=state]").textContent === "REVOKED"`,
			chromedp.WithPollingTimeout(20*time.Second))); err != nil {
			t.Fatalf("the open search page did not show the revocation: %v", err)
		}
	})

	t.Run("overview numbers equal the API's and tacline pool list's", func(t *testing.T) {
		// One API error to count: a device that does not exist.
		if resp, err := roleGet(t, env, serverURL+"/v1/devices/no-such-device"); err != nil || resp != 404 {
			t.Fatalf("GET an unknown device: %d, %v; want 404", resp, err)
		}
		open(t, operator+"/console/", 200, "overview")
		errs := evalJSON[map[string]string](t, b, `Object.fromEntries([...document.querySelectorAll("#errors tbody tr")].map(tr => [tr.querySelector("th").textContent, tr.querySelector("td").textContent]))`)
		metrics := getText(t, env, serverURL+"/metrics")
		for code, n := range errs {
			if line := `tacline_errors_total{code="` + code + `"} ` + n; !strings.Contains(metrics, line) {
				t.Errorf("overview shows %s errors %s; /metrics has no line %q", code, n, line)
			}
		}
		if errs["not_found"] == "" {
			t.Errorf("overview errors %v lack the not_found just provoked", errs)
		}
		type row struct {
			Pool                                   string
			Reserved, Bound, Voided, Revoked, Free int64
		}
		page := evalJSON[[]row](t, b, `[...document.querySelectorAll("#pools tbody tr")].map(tr => {
			const n = k => Number(tr.querySelector("[data-k=" + k + "]").textContent);
			return {Pool: tr.dataset.pool, Reserved: n("reserved"), Bound: n("bound"), Voided: n("voided"), Revoked: n("revoked"), Free: n("free")};
		})`)
		var apiList wire.PoolList
		getJSON(t, env, serverURL+wire.PathPools, &apiList)
		var fromAPI []row
		for _, p := range apiList.Pools {
			fromAPI = append(fromAPI, row{p.Name, p.Reserved, p.Bound, p.Voided, p.Revoked, p.Free})
		}
		out, err := exec.CommandContext(ctx, bin, "--config", env.ConfigPath, "pool", "list", "--json").Output()
		if err != nil {
			t.Fatalf("tacline pool list: %v", err)
		}
		var fromCLI []row
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			var p struct {
				Name                                   string
				Reserved, Bound, Voided, Revoked, Free int64
			}
			if err := json.Unmarshal([]byte(line), &p); err != nil {
				t.Fatalf("pool list line %q: %v", line, err)
			}
			fromCLI = append(fromCLI, row{p.Name, p.Reserved, p.Bound, p.Voided, p.Revoked, p.Free})
		}
		for _, rs := range [][]row{page, fromAPI, fromCLI} {
			sort.Slice(rs, func(i, j int) bool { return rs[i].Pool < rs[j].Pool })
		}
		if len(page) != 2 || fmt.Sprint(page) != fmt.Sprint(fromAPI) || fmt.Sprint(page) != fmt.Sprint(fromCLI) {
			t.Fatalf("pools:\n page %v\n API  %v\n CLI  %v", page, fromAPI, fromCLI)
		}
		if page[0].Revoked+page[1].Revoked != 4 || page[0].Voided+page[1].Voided != 2 {
			t.Fatalf("pools %v: want the 4 revoked and 2 voided IMEIs of the previous subtests", page)
		}
		// The test server has no register.url: the page says delivery is off.
		wantText(t, b, "#delivery-off", "does not deliver to the register")
		// Each station provisioned 3 devices in the last hour.
		perStation := evalJSON[map[string]string](t, b, `Object.fromEntries([...document.querySelectorAll("#stations tbody tr")].map(tr => [tr.dataset.station, tr.querySelector("[data-k=devices]").textContent]))`)
		for _, s := range env.Stations {
			if perStation[s] != "3" {
				t.Fatalf("station %s: %q devices in the last hour on the page, want 3 (%v)", s, perStation[s], perStation)
			}
		}
		if n := evalJSON[string](t, b, `document.querySelector("#lines [data-line='F1/L1'] [data-k=devices]").textContent`); n != "3" {
			t.Fatalf("line F1/L1: %q devices in the last hour, want 3", n)
		}
		// The live panel reloads by itself (console.js polls the fragment).
		before := evalJSON[string](t, b, `document.querySelector("#updated").textContent`)
		if _, err := chromedp.Run(b, chromedp.Poll[bool](`document.querySelector("#updated").textContent !== `+jsString(before), chromedp.WithPollingTimeout(20*time.Second))); err != nil {
			t.Fatalf("the overview did not refresh itself: %v", err)
		}
	})

	t.Run("check page answers registered, revoked and unknown, then asks to wait", func(t *testing.T) {
		if err := chromedp.Do(b, chromedp.EmulateViewport(390, 844)); err != nil {
			t.Fatal(err)
		}
		defer chromedp.Do(b, chromedp.EmulateViewport(1280, 900))
		open(t, public+"/check", 200, "")
		// The check digit is checked as the person types.
		good := devices[3].IMEIs[0]
		bad := good[:14] + string('0'+(good[14]-'0'+1)%10)
		if err := chromedp.Do(b, chromedp.SendKeys(chromedp.CSS("#imei"), bad[:8]+"-"+bad[8:])); err != nil {
			t.Fatal(err)
		}
		wantText(t, b, "#imei-live", "The last digit does not match")
		// Registered, typed with spaces and dashes, submitted by the form.
		if err := chromedp.Do(b, chromedp.SetValue(chromedp.CSS("#imei"), good[:2]+" "+good[2:8]+"-"+good[8:14]+" "+good[14:])); err != nil {
			t.Fatal(err)
		}
		submit(t, b, "form.check button", 200)
		wantText(t, b, "#verdict", "Registered")
		wantText(t, b, "#brand", devenv.Manufacturer)
		if loc, _ := chromedp.Run(b, chromedp.Location()); !strings.Contains(loc, "/check?imei=") {
			t.Fatalf("the check is not a shareable GET link: %s", loc)
		}
		page(t, b, axe, shots, "check")
		if w := evalJSON[int](t, b, `document.documentElement.scrollWidth`); w > 390 {
			t.Fatalf("the check page is %d px wide on a 390 px phone screen", w)
		}
		html, err := chromedp.Run(b, chromedp.OuterHTML(chromedp.CSS("main")))
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range []string{devices[3].Serial, env.Stations[0], env.Stations[1], "BEGIN"} {
			if strings.Contains(html, secret) {
				t.Fatalf("the public check page shows %q", secret)
			}
		}
		open(t, public+"/check?imei="+devices[0].IMEIs[0], 200, "")
		wantText(t, b, "#verdict", "Revoked")
		unknown, _ := imei.New(35209900, 176148)
		open(t, public+"/check?imei="+unknown.String(), 200, "")
		wantText(t, b, "#verdict", "Unknown")
		open(t, public+"/check?imei="+good, 429, "")
		wantText(t, b, ".answer.wait", "Please wait")
		open(t, public+"/check?imei=12345", 400, "")
		wantText(t, b, ".answer.bad", "not a valid IMEI")
	})

	t.Run("regulator reconciles an uploaded register file", func(t *testing.T) {
		// The register lists devices 3 and 4, an IMEI twice, one IMEI
		// never allocated here and a line that is no IMEI.
		tac := devices[3].IMEIs[0][:8]
		stranger := tac + "999999"
		lines := []string{devices[3].IMEIs[0], devices[3].IMEIs[1], devices[4].IMEIs[0], devices[4].IMEIs[1], devices[4].IMEIs[1], stranger, "not-an-imei"}
		path := filepath.Join(t.TempDir(), "register.txt")
		if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		// An upload without its token is refused before the file is read.
		open(t, regulator+"/console/regulator", 200, "")
		evalJSON[bool](t, b, `document.querySelector("#upload input[name=csrf]").remove(); true`)
		if err := chromedp.Do(b, chromedp.SetUploadFiles(chromedp.CSS("#file"), []string{path})); err != nil {
			t.Fatal(err)
		}
		submit(t, b, "#upload button", 403)
		open(t, regulator+"/console/regulator", 200, "")
		wantText(t, b, "main", "No runs yet")
		if err := chromedp.Do(b, chromedp.SetUploadFiles(chromedp.CSS("#file"), []string{path}), chromedp.SetValue(chromedp.CSS("#format"), "lines")); err != nil {
			t.Fatal(err)
		}
		submit(t, b, "#upload button", 200)
		counts := evalJSON[map[string]string](t, b, `Object.fromEntries([...document.querySelectorAll("#run-1 [data-file]")].map(td => [td.dataset.file, td.textContent]))`)
		// Bound here but not listed: device 2 (2 IMEIs); devices 0 and 5
		// are revoked and device 1 voided, so not missing.
		want := map[string]string{"missing_in_register.csv": "2", "unknown_to_manufacturer.csv": "1", "status_mismatch.csv": "0",
			"duplicates_in_register.csv": "1", "registered_to_other_device.csv": "0", "malformed.csv": "1"}
		if fmt.Sprint(counts) != fmt.Sprint(want) {
			t.Fatalf("reconciliation counts %v, want %v", counts, want)
		}
		page(t, b, axe, shots, "regulator")
		csv := fetchText(t, b, "/console/regulator/runs/1/unknown_to_manufacturer.csv")
		if !strings.Contains(csv, stranger) {
			t.Fatalf("unknown_to_manufacturer.csv does not list %s:\n%s", stranger, csv)
		}
	})

	t.Run("auditor exports the log and sees it verified", func(t *testing.T) {
		open(t, auditor+"/console/audit", 200, "")
		evalJSON[bool](t, b, `document.querySelector("#export input[name=csrf]").remove(); true`)
		submit(t, b, "#export button", 403)
		open(t, auditor+"/console/audit", 200, "")
		submit(t, b, "#export button", 200)
		wantText(t, b, "#exports [data-k=verdict]", "valid")
		page(t, b, axe, shots, "audit")
		if n := evalJSON[int](t, b, `document.querySelectorAll("#checkpoints tbody tr").length`); n < 1 {
			t.Fatalf("no checkpoint listed")
		}
	})
}

// proxy serves http://127.0.0.1:port for the browser and forwards to the
// server over mutual TLS with the credentials in dir (cert.pem, key.pem;
// dir "" sends no certificate).
func proxy(t *testing.T, env *devenv.Env, serverURL, dir string) string {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(env.CredsDir, "server-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if dir != "" {
		cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	target, _ := url.Parse(serverURL)
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host
		},
		Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true},
	}
	ts := httptest.NewServer(rp)
	t.Cleanup(ts.Close)
	return ts.URL
}

// page runs axe-core's WCAG 2 A and AA rules in the loaded page and fails
// on any violation; with shots set it saves a screenshot named shot.
func page(t *testing.T, b context.Context, axe []byte, shots, shot string) {
	t.Helper()
	if _, err := chromedp.Run(b, chromedp.Evaluate[bool](string(axe)+";true")); err != nil {
		t.Fatalf("inject axe-core: %v", err)
	}
	type violation struct {
		ID, Impact, Help string
		Nodes            []struct{ Target []any }
	}
	vs, err := chromedp.Run(b, chromedp.Evaluate[[]violation](
		`axe.run(document, {runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}).then(r => r.violations)`,
		chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("run axe-core: %v", err)
	}
	for _, v := range vs {
		var where []string
		for _, n := range v.Nodes {
			where = append(where, fmt.Sprint(n.Target...))
		}
		t.Errorf("axe-core (WCAG 2 AA): %s (%s): %s at %s", v.ID, v.Impact, v.Help, strings.Join(where, "; "))
	}
	if shots != "" && shot != "" {
		png, err := chromedp.Run(b, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(shots, shot+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// submit clicks sel, waits for the page the form leads to and checks its
// status.
func submit(t *testing.T, b context.Context, sel string, status int64) {
	t.Helper()
	resp, err := chromedp.RunResponse(b, chromedp.Click(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("click %s: %v", sel, err)
	}
	if resp.Status != status {
		t.Fatalf("click %s: status %d, want %d", sel, resp.Status, status)
	}
}

func wantText(t *testing.T, b context.Context, sel, want string) {
	t.Helper()
	got, err := chromedp.Run(b, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("read %s: %v", sel, err)
	}
	if !strings.Contains(got, want) {
		t.Fatalf("%s says %q, want %q", sel, got, want)
	}
}

func evalJSON[T any](t *testing.T, b context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(b, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// fetchText fetches path from the page's origin (with the page's
// identity) and returns the body.
func fetchText(t *testing.T, b context.Context, path string) string {
	t.Helper()
	s, err := chromedp.Run(b, chromedp.Evaluate[string](`fetch(`+jsString(path)+`).then(r => r.text())`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("fetch %s: %v", path, err)
	}
	return s
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// checkHeaders checks the security headers every page carries.
func checkHeaders(t *testing.T, h map[string]any) {
	t.Helper()
	get := func(name string) string {
		for k, v := range h {
			if strings.EqualFold(k, name) {
				return fmt.Sprint(v)
			}
		}
		return ""
	}
	csp := get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
		if !strings.Contains(csp, want) {
			t.Fatalf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Fatalf("Content-Security-Policy %q allows inline or eval", csp)
	}
	if get("X-Content-Type-Options") != "nosniff" || get("X-Frame-Options") != "DENY" {
		t.Fatalf("missing nosniff or X-Frame-Options: %v", h)
	}
}

func deviceState(t *testing.T, db *store.DB, serial string) lifecycle.State {
	t.Helper()
	d, err := db.Device(context.Background(), serial)
	if err != nil || d == nil {
		t.Fatalf("device %s: %v", serial, err)
	}
	return d.State
}

func getJSON(t *testing.T, env *devenv.Env, u string, out any) {
	t.Helper()
	if err := json.Unmarshal([]byte(getText(t, env, u)), out); err != nil {
		t.Fatal(err)
	}
}

// getText GETs u as the operator through the API and wants 200.
func getText(t *testing.T, env *devenv.Env, u string) string {
	t.Helper()
	c, err := devenv.RoleClient(env, "operator")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s %s", u, resp.Status, buf.String())
	}
	return buf.String()
}

// roleGet GETs u as the operator through the API and returns the status.
func roleGet(t *testing.T, env *devenv.Env, u string) (int, error) {
	t.Helper()
	c, err := devenv.RoleClient(env, "operator")
	if err != nil {
		return 0, err
	}
	resp, err := c.Get(u)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// taclineBin is $TACLINE_BIN (make test builds it) or a binary built now.
func taclineBin(t *testing.T) string {
	if bin := os.Getenv("TACLINE_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "tacline")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/tacline")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/tacline: %v\n%s", err, out)
	}
	return bin
}
