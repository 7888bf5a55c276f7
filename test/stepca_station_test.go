package test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/factory/sim"
	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/stepca"
	"github.com/tacline/tacline/stepca/stepcatest"
	"github.com/tacline/tacline/store"
)

// TestStepCAStationCLI drives the station side of step-ca interop through
// the tacline binary: `station enroll --stepca` records the station and
// prints the template and token command, `station bootstrap` gets the
// identity from a real step-ca with a one-time token, `tacline serve`
// (server.stepca_station_ca) maps it to the station, and `station simulate`
// provisions with it next to a tacline-enrolled station; `stepca
// provisioner` prints the device provisioner for the RA key.
func TestStepCAStationCLI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env, err := devenv.Setup(ctx, devenv.Options{Dir: filepath.Join(t.TempDir(), "env"), Stations: 1})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := hsm.Open(env.Config.HSM)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	if _, err := tok.GenerateKey("tacline-ra", hsm.ECP256); err != nil {
		t.Fatal(err)
	}
	sca, opKey := stepcatest.StartStationCA(t, env.Config.HSM, tok, time.Hour)
	cfg := env.ConfigPath

	r := tacline(t, time.Minute, "--config", cfg, "stepca", "provisioner", "--key-label", "tacline-ra")
	var p stepca.Provisioner
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &p) != nil || p.Type != "JWK" || p.Name != "tacline-devices" ||
		p.Options["x509"].(map[string]any)["template"] != stepca.DeviceTemplate {
		t.Fatalf("tacline stepca provisioner exited %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	creds, err := factory.LoadCreds(env.CredsDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, env.Config.Database)
	if err != nil {
		t.Fatal(err)
	}
	other, err := db.Station(ctx, creds.Stations[0].ID)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	r = tacline(t, time.Minute, "--config", cfg, "station", "enroll", "--stepca", "--id", "SCA-9",
		"--pools", strings.Join(other.Pools, ","), "--product", creds.Stations[0].Product)
	if r.code != 0 || !strings.Contains(r.stdout, `"urn:tacline:station:"`) || !strings.Contains(r.stdout, "step ca token SCA-9 --provisioner tacline-stations") {
		t.Fatalf("station enroll --stepca exited %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	ott, err := stepca.StationToken(sca.URL, "tacline-stations", opKey, "SCA-9", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tokFile := filepath.Join(t.TempDir(), "SCA-9.token")
	if err := os.WriteFile(tokFile, []byte(ott+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = tacline(t, time.Minute, "station", "bootstrap", "--ca-url", sca.URL, "--root", sca.RootFile, "--token", tokFile,
		"--dir", filepath.Join(env.CredsDir, "SCA-9"))
	if r.code != 0 || !strings.Contains(r.stdout, "urn:tacline:station:SCA-9") {
		t.Fatalf("station bootstrap exited %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	setSections(t, cfg, map[string]any{"server": map[string]any{"listen": "127.0.0.1:8443", "tls_cert": "server/cert.pem", "tls_key": "server/key.pem",
		"client_ca": []string{"ca/station-ca.pem"}, "stepca_station_ca": []string{sca.RootFile}, "stepca_crl": sca.URL + "/1.0/crl"}})
	logPath := filepath.Join(env.Dir, "serve.log")
	proc, err := devenv.StartServer(ctx, taclineBin, cfg, logPath)
	if err != nil {
		logTail(t, logPath, 30)
		t.Fatal(err)
	}
	defer proc.Kill()
	devOut := filepath.Join(t.TempDir(), "devices.ndjson")
	r = tacline(t, 2*time.Minute, "--config", cfg, "station", "simulate", "--server", proc.URL, "--devices", "5", "--devices-out", devOut, "--json")
	var sum sim.Summary
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &sum) != nil || sum.Stations != 2 || sum.Devices != 10 || sum.Failed != 0 {
		logTail(t, logPath, 30)
		t.Fatalf("station simulate with a step-ca station exited %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if err := proc.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	db, err = store.Open(ctx, env.Config.Database)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	out, err := os.ReadFile(devOut)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var d struct {
			Serial string `json:"device_serial"`
		}
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatal(err)
		}
		rec, err := db.Device(ctx, d.Serial)
		if err != nil || rec == nil {
			t.Fatalf("device %s: %v", d.Serial, err)
		}
		if rec.Station == "SCA-9" {
			n++
		}
	}
	if n != 5 {
		t.Fatalf("devices of station SCA-9 in the ledger: %d, want 5", n)
	}
}
