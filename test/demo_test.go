package test

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/imei"
)

// demoDevice is one line of exports/devices.ndjson.
type demoDevice struct {
	DeviceSerial string   `json:"device_serial"`
	IMEIs        []string `json:"imeis"`
	Certificate  string   `json:"certificate"`
}

// TestDemo runs `tacline demo` as a process twice in the same directory and
// checks what it exported each time.
func TestDemo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	const stations, devices = 2, 20
	for _, tc := range []struct {
		name string
	}{
		{name: "fresh directory"},
		{name: "again in the same directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tacline(t, 3*time.Minute, "demo", "--dir", dir, "--stations", "2", "--devices", "20")
			if r.code != 0 {
				t.Fatalf("tacline demo exited %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stdout, "ledger check: OK") {
				t.Errorf("tacline demo did not report the ledger check:\n%s", r.stdout)
			}
			for _, want := range []string{"/console/", "/check", filepath.Join(dir, "identities", "person-operator", "cert.pem")} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("tacline demo did not print %s (the web console's address and identity):\n%s", want, r.stdout)
				}
			}
			checkDevicesExport(t, filepath.Join(dir, "exports"), stations*devices)
			checkExportedPKI(t, dir)
			if r := tacline(t, time.Minute, "--config", filepath.Join(dir, "tacline.yaml"), "ledger", "check"); r.code != 0 {
				t.Fatalf("tacline ledger check on the demo's ledger exited %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
			}
		})
	}
}

// checkExportedPKI runs what an outside verifier would on the demo's
// exports: `openssl verify -x509_strict -crl_check_all` of a device
// certificate against the device root, the exported chain and the
// exported CRLs (issuing CA and root), the chain also at times past 2041
// (no certificate outlives its issuer); the device root refuses a station
// certificate and the server's TLS certificate.
func checkExportedPKI(t *testing.T, dir string) {
	t.Helper()
	exports := filepath.Join(dir, "exports")
	f, err := os.Open(filepath.Join(exports, "devices.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	var d demoDevice
	err = json.NewDecoder(f).Decode(&d)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	devFile := filepath.Join(t.TempDir(), "device.pem")
	if err := os.WriteFile(devFile, []byte(d.Certificate), 0o644); err != nil {
		t.Fatal(err)
	}
	root, chain := filepath.Join(exports, "device-root.pem"), filepath.Join(exports, "ca-chain.pem")
	verify := func(ok bool, args ...string) {
		t.Helper()
		out, err := exec.Command("openssl", append([]string{"verify", "-x509_strict"}, args...)...).CombinedOutput()
		if (err == nil) != ok || ok && !strings.Contains(string(out), ": OK") || !ok && !strings.Contains(string(out), "unable to get local issuer certificate") {
			t.Fatalf("openssl verify %s: %v (want success %v)\n%s", strings.Join(args, " "), err, ok, out)
		}
	}
	verify(true, "-crl_check_all", "-CAfile", root, "-untrusted", chain, "-CRLfile", filepath.Join(exports, "crls.pem"), devFile)
	for _, year := range []int{2042, 9999} {
		at := time.Date(year, 12, 30, 0, 0, 0, 0, time.UTC).Unix()
		verify(true, "-attime", strconv.FormatInt(at, 10), "-CAfile", root, "-untrusted", chain, devFile)
	}
	verify(false, "-CAfile", root, filepath.Join(dir, "stations", "F1-L1-S01", "cert.pem"))
	verify(false, "-CAfile", root, filepath.Join(dir, "server", "cert.pem"))
}

// checkDevicesExport checks exports/devices.ndjson against
// exports/ca-chain.pem: want lines, one device each, two valid 15-digit
// IMEIs per device, never shared, and a certificate that chains to the
// exported CA chain and names exactly the device's IMEIs and serial.
func checkDevicesExport(t *testing.T, exports string, want int) {
	t.Helper()
	roots, inter := loadChain(t, filepath.Join(exports, "ca-chain.pem"))
	f, err := os.Open(filepath.Join(exports, "devices.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seenIMEI := map[string]string{}
	seenSerial := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		var d demoDevice
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("devices.ndjson line %d: %v", n, err)
		}
		if d.DeviceSerial == "" || seenSerial[d.DeviceSerial] {
			t.Fatalf("devices.ndjson line %d: device_serial %q is empty or repeated", n, d.DeviceSerial)
		}
		seenSerial[d.DeviceSerial] = true
		if len(d.IMEIs) != 2 {
			t.Fatalf("devices.ndjson line %d: %d IMEIs, want 2", n, len(d.IMEIs))
		}
		var urns []string
		for _, s := range d.IMEIs {
			m, err := imei.Parse(s)
			if err != nil || len(s) != 15 || m.String() != s {
				t.Fatalf("devices.ndjson line %d: IMEI %q is not a valid 15-digit IMEI (%v)", n, s, err)
			}
			if other, ok := seenIMEI[s]; ok {
				t.Fatalf("devices.ndjson line %d: IMEI %s also belongs to device %s", n, s, other)
			}
			seenIMEI[s] = d.DeviceSerial
			urns = append(urns, m.URN())
		}
		block, rest := pem.Decode([]byte(d.Certificate))
		if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
			t.Fatalf("devices.ndjson line %d: certificate is not one PEM CERTIFICATE block", n)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatalf("devices.ndjson line %d: %v", n, err)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Fatalf("devices.ndjson line %d: certificate does not chain to ca-chain.pem: %v", n, err)
		}
		if cert.Subject.SerialNumber != d.DeviceSerial {
			t.Errorf("devices.ndjson line %d: certificate serialNumber %q, device %q", n, cert.Subject.SerialNumber, d.DeviceSerial)
		}
		var san []string
		for _, u := range cert.URIs {
			san = append(san, u.String())
		}
		slices.Sort(san)
		slices.Sort(urns)
		if !slices.Equal(san, urns) {
			t.Errorf("devices.ndjson line %d: certificate SAN %v, IMEIs %v", n, san, urns)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n != want {
		t.Fatalf("devices.ndjson has %d lines, want %d", n, want)
	}
}

// loadChain splits a PEM chain into its self-signed roots and the rest.
func loadChain(t *testing.T, path string) (roots, inter *x509.CertPool) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	roots, inter = x509.NewCertPool(), x509.NewCertPool()
	nroots := 0
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
			roots.AddCert(c)
			nroots++
		} else {
			inter.AddCert(c)
		}
	}
	if nroots == 0 {
		t.Fatalf("%s holds no self-signed root", path)
	}
	return roots, inter
}

// TestDemoStepCA runs `tacline demo --issuer stepca`: the same line through
// a real step-ca (intermediate key in the demo's SoftHSM2 token), whose
// chain is exports/ca-chain.pem and verifies every exported device.
func TestDemoStepCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	r := tacline(t, 3*time.Minute, "demo", "--issuer", "stepca", "--dir", dir, "--stations", "2", "--devices", "10")
	if r.code != 0 {
		t.Fatalf("tacline demo --issuer stepca exited %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "ledger check: OK") || !strings.Contains(r.stdout, "step-ca on https://127.0.0.1:") {
		t.Errorf("tacline demo --issuer stepca output:\n%s", r.stdout)
	}
	chain, err := os.ReadFile(filepath.Join(dir, "exports", "ca-chain.pem"))
	if err != nil {
		t.Fatal(err)
	}
	for b, rest := pem.Decode(chain); b != nil; b, rest = pem.Decode(rest) {
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(c.Subject.Organization, "Acme Step") {
			t.Fatalf("exports/ca-chain.pem holds %s, not step-ca's chain", c.Subject)
		}
	}
	checkDevicesExport(t, filepath.Join(dir, "exports"), 2*10)
}
