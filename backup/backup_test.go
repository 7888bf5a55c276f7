package backup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/tacerr"
)

// A set is read only when every file matches its manifest.
func TestReadManifest(t *testing.T) {
	t.Parallel()
	mk := func(t *testing.T) string {
		dir := t.TempDir()
		for name, data := range map[string]string{"ledger.db": "ledger bytes", CheckpointFile: "note\n"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		files, err := hashFiles(dir)
		if err != nil {
			t.Fatal(err)
		}
		m := &Manifest{Format: format, Version: 1, CreatedAt: time.Now(), Dialect: "sqlite", Ledger: "ledger.db", Files: files}
		if err := writeManifest(dir, m); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	for _, tc := range []struct {
		name   string
		change func(dir string) error
		want   string // in the error; empty: valid
	}{
		{"intact", func(string) error { return nil }, ""},
		{"altered", func(d string) error {
			return os.WriteFile(filepath.Join(d, "ledger.db"), []byte("ledger bytez"), 0o600)
		}, "does not match the manifest"},
		{"missing", func(d string) error { return os.Remove(filepath.Join(d, CheckpointFile)) }, "checkpoint is missing"},
		{"extra", func(d string) error { return os.WriteFile(filepath.Join(d, "x"), nil, 0o600) }, "x is not in the manifest"},
		{"no manifest", func(d string) error { return os.Remove(filepath.Join(d, ManifestFile)) }, "incomplete"},
		{"other format", func(d string) error {
			return os.WriteFile(filepath.Join(d, ManifestFile), []byte(`{"format":"tar","version":1}`), 0o600)
		}, "not a tacline backup set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := mk(t)
			if err := tc.change(dir); err != nil {
				t.Fatal(err)
			}
			m, err := ReadManifest(dir)
			if tc.want == "" {
				if err != nil || m.Ledger != "ledger.db" || len(m.Files) != 2 {
					t.Fatalf("ReadManifest = %+v, %v", m, err)
				}
				return
			}
			if _, ok := tacerr.As(err); !ok || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ReadManifest error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestCreateRefusesNonEmptyDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "old"), nil, 0o600)
	if _, err := emptyDir(dir); !tacerr.Is(err, tacerr.InvalidInput) {
		t.Fatalf("emptyDir(non-empty) = %v", err)
	}
}
