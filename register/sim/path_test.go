package sim_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/tacline/tacline/register/sim"
)

// TestDatabasePathWithURICharacters: the simulator's SQLite file is opened
// at its path even when the path holds characters SQLite's URI filenames
// treat specially ('#' ends the path, %HH is decoded).
func TestDatabasePathWithURICharacters(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "register#2 100%41")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "sim.db")
	s, err := sim.New(path, sim.Faults{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("the simulator's database is not at %s: %v", path, err)
	}
	ents, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"register#2 100%41"}) {
		t.Fatalf("files next to the database's directory: %q (SQLite cut or decoded the path)", names)
	}
}
