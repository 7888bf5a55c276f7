package hsm_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/tacerr"
)

func TestInitDev(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "dev")
	cfg, err := hsm.InitDev(dir, "line-1", "pin-4321")
	if err != nil {
		t.Fatalf("InitDev: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("returned config does not validate: %v", err)
	}
	if cfg.TokenLabel != "line-1" || cfg.PIN != "file:"+filepath.Join(dir, "pin") || cfg.SoftHSMConf != filepath.Join(dir, "softhsm2.conf") {
		t.Fatalf("config = %+v", cfg)
	}
	for name, want := range map[string]string{"pin": "pin-4321\n", "so-pin": ""} {
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v; want 0600", name, err, fi.Mode())
		}
		b, _ := os.ReadFile(p)
		if want != "" && string(b) != want {
			t.Errorf("%s = %q, want %q", name, b, want)
		}
	}
	conf, err := os.ReadFile(cfg.SoftHSMConf)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"directories.tokendir = " + filepath.Join(dir, "tokens"), "objectstore.backend = file", "log.level = ERROR"} {
		if !strings.Contains(string(conf), line+"\n") {
			t.Errorf("softhsm2.conf lacks %q:\n%s", line, conf)
		}
	}
	// The token exists for SoftHSM2 with that configuration.
	cmd := exec.Command("softhsm2-util", "--show-slots")
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+cfg.SoftHSMConf)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if labels := hsm.ParseSlotLabels(string(out)); len(labels) != 1 || labels[0] != "line-1" {
		t.Fatalf("tokens in %s: %q", dir, labels)
	}

	// A second token in the same directory is refused and writes nothing.
	before := listTree(t, dir)
	if _, err := hsm.InitDev(dir, "line-2", ""); !tacerr.Is(err, tacerr.Conflict) {
		t.Fatalf("second InitDev = %v, want conflict", err)
	}
	if after := listTree(t, dir); after != before {
		t.Fatalf("refused InitDev changed %s:\n%s\n->\n%s", dir, before, after)
	}
}

func TestInitDevBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		dir       string
		label     string
		pin       string
		wantField string
	}{
		{name: "no dir", dir: "", wantField: "dir"},
		{name: "long label", dir: "d", label: strings.Repeat("x", 33), wantField: "label"},
		{name: "short pin", dir: "d", pin: "123", wantField: "pin"},
		{name: "pin with newline", dir: "d", pin: "1234\n5678", wantField: "pin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			dir := tt.dir
			if dir != "" {
				dir = filepath.Join(base, dir)
			}
			_, err := hsm.InitDev(dir, tt.label, tt.pin)
			e, ok := tacerr.As(err)
			if !ok || e.Field != tt.wantField {
				t.Fatalf("InitDev = %v, want an error on field %s", err, tt.wantField)
			}
			if tt.pin != "" && strings.Contains(err.Error(), tt.pin) {
				t.Errorf("error shows the PIN: %v", err)
			}
			if entries, _ := os.ReadDir(base); len(entries) != 0 {
				t.Errorf("refused InitDev left %d entries in %s", len(entries), base)
			}
		})
	}
}

func listTree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		b.WriteString(p + " " + fi.Mode().String() + " " + fi.ModTime().String() + "\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
