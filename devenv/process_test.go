package devenv

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCommandName checks the name a demo's hints give the binary: what a
// user types from the directory the demo ran in.
func TestCommandName(t *testing.T) {
	root := t.TempDir()
	bin := filepath.Join(root, "bin", "tacline")
	other := filepath.Join(t.TempDir(), "tacline")
	for _, p := range []string{bin, other, filepath.Join(root, "tacline")} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(root)
	t.Setenv("PATH", "/nonexistent")
	for _, c := range []struct{ bin, want string }{
		{bin, filepath.Join("bin", "tacline")},
		{filepath.Join(root, "tacline"), "./tacline"},
		{other, other},
		{"", "tacline"},
	} {
		if got := CommandName(c.bin); got != c.want {
			t.Errorf("CommandName(%q) = %q, want %q", c.bin, got, c.want)
		}
	}
	t.Setenv("PATH", filepath.Dir(other))
	if got := CommandName(other); got != "tacline" {
		t.Errorf("CommandName(%q) with its directory on PATH = %q, want tacline", other, got)
	}
	if got := CommandName(bin); got != filepath.Join("bin", "tacline") {
		t.Errorf("CommandName(%q) with another tacline on PATH = %q, want bin/tacline", bin, got)
	}
}
