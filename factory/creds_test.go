package factory

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tacline/tacline/factory/factorytest"
	"github.com/tacline/tacline/tacerr"
)

func TestLoadCreds(t *testing.T) {
	t.Parallel()
	pki := newPKI(t) // writes ca-chain.pem, server-ca.pem and F1-L1-S01/{cert,key}.pem
	factorytest.WriteFile(t, filepath.Join(pki.Dir, "F1-L1-S01", CredsProductFile), []byte("  widget 5G\n"))
	stations(t, pki, 3, "widget") // F1-L1-S01..S03 (S01 overwritten with product widget)
	pki.Station(t, "F1-L2-S01", filepath.Join(pki.Dir, "F1-L2-S01"))
	factorytest.WriteFile(t, filepath.Join(pki.Dir, "F1-L2-S01", CredsPoolFile), []byte("pool-7"))
	if err := os.Mkdir(filepath.Join(pki.Dir, "not-a-station"), 0o700); err != nil {
		t.Fatal(err)
	}
	pki.Station(t, "person-operator", filepath.Join(pki.Dir, "person-operator")) // role credentials: no product

	c, err := LoadCreds(pki.Dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range c.Stations {
		ids = append(ids, s.ID)
	}
	if strings.Join(ids, ",") != "F1-L1-S01,F1-L1-S02,F1-L1-S03,F1-L2-S01" {
		t.Errorf("stations = %v", ids)
	}
	if c.Stations[3].Pool != "pool-7" || c.Stations[3].Product != "" || c.Stations[0].Product != "widget" {
		t.Errorf("products/pools = %+v", c.Stations)
	}
	if c.RootsFile != filepath.Join(pki.Dir, "ca-chain.pem") || c.ServerCAFile != filepath.Join(pki.Dir, "server-ca.pem") {
		t.Errorf("trust files = %s, %s", c.RootsFile, c.ServerCAFile)
	}
	two, err := LoadCreds(pki.Dir, 2)
	if err != nil || len(two.Stations) != 2 || two.Stations[1].ID != "F1-L1-S02" {
		t.Fatalf("LoadCreds(2) = %+v, %v", two, err)
	}

	tests := []struct {
		name  string
		setup func(dir string)
		n     int
		msg   string
	}{
		{name: "too many stations", n: 9, msg: "only 4"},
		{name: "missing server CA", setup: func(dir string) { os.Remove(filepath.Join(dir, CredsServerCAFile)) }, msg: "server-ca.pem is missing"},
		{name: "station without product skipped", setup: func(dir string) { os.Remove(filepath.Join(dir, "F1-L1-S02", CredsProductFile)) }, n: 4, msg: "only 3"},
		{name: "two-line product", setup: func(dir string) {
			factorytest.WriteFile(t, filepath.Join(dir, "F1-L1-S03", CredsProductFile), []byte("a\nb\n"))
		}, msg: "more than one line"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.CopyFS(dir, os.DirFS(pki.Dir)); err != nil {
				t.Fatal(err)
			}
			if tc.setup != nil {
				tc.setup(dir)
			}
			_, err := LoadCreds(dir, tc.n)
			if err == nil || !strings.Contains(err.Error(), tc.msg) || tacerr.CodeOf(err) != tacerr.InvalidInput {
				t.Fatalf("err = %v, want invalid_input mentioning %q", err, tc.msg)
			}
		})
	}
}

func FuzzParseNameFile(f *testing.F) {
	for _, s := range []string{"widget\n", "  widget 5G \r\n", "", "a\nb", "\x00", strings.Repeat("x", 129), "\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		name, err := ParseNameFile(data)
		if err != nil {
			if name != "" {
				t.Fatalf("error %v with a name %q", err, name)
			}
			return
		}
		if name == "" || len(name) > 128 || strings.TrimSpace(name) != name || !utf8.ValidString(name) || strings.ContainsAny(name, "\n\r\x00") {
			t.Fatalf("accepted %q", name)
		}
	})
}

func FuzzParseRetryAfter(f *testing.F) {
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	for _, s := range []string{"", "0", "120", "-1", "1e3", now.Add(time.Hour).Format(http.TimeFormat), "Fri, 27 Nov 2026 09:00:05 GMT", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d := ParseRetryAfter(v, now)
		if d < 0 || d > maxRetryAfter {
			t.Fatalf("ParseRetryAfter(%q) = %s, outside [0, %s]", v, d, maxRetryAfter)
		}
	})
}

func FuzzParseProblem(f *testing.F) {
	f.Add(503, "application/problem+json", []byte(`{"code":"hsm_unavailable","retryable":true,"status":503,"title":"x"}`))
	f.Add(400, "application/json", []byte(`{"code":"csr_invalid","field":"csr"}`))
	f.Add(502, "text/html", []byte("<html>bad gateway</html>"))
	f.Add(500, "application/problem+json", []byte(`{"code":`))
	f.Fuzz(func(t *testing.T, status int, ct string, body []byte) {
		p := parseProblem(status, ct, body)
		if p.Status == 0 && status != 0 {
			t.Fatalf("problem lost the status: %+v", p)
		}
		if p.Code == "" && p.Title == "" && http.StatusText(status) != "" {
			t.Fatalf("problem with neither code nor title for status %d", status)
		}
		if len(p.Detail) > 210 && !strings.Contains(ct, "json") {
			t.Fatalf("synthesised detail of %d bytes", len(p.Detail))
		}
	})
}
