package atomicfile

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestWriteReplacesWholeFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	for _, data := range []string{"first, longer contents", "second"} {
		if err := Write(p, []byte(data), 0o640); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil || string(b) != data {
			t.Fatalf("read %q, %v; want %q", b, err, data)
		}
		if st, _ := os.Stat(p); st.Mode().Perm() != 0o640 {
			t.Fatalf("mode %v", st.Mode())
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
	if err := Write(filepath.Join(dir, "missing", "f"), nil, 0o600); err == nil {
		t.Fatal("Write into a missing directory succeeded")
	}
}

// readSet reads the names of a set in dir as a reader that opens them one
// by one does ("" for a missing one).
func readSet(t *testing.T, dir string, names ...string) string {
	t.Helper()
	var out []string
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return strings.Join(out, "|")
}

// TestWriteSetStoppedAnywhere: WriteSet stopped at any of its steps (as a
// crash stops it) leaves every name of the set old or every name new,
// never a mixture, whether the names were regular files before (written
// by Write) or a set already; SetDir gives the same; the next WriteSet
// completes and leaves one generation.
func TestWriteSetStoppedAnywhere(t *testing.T) {
	set := func(tag string) []File {
		return []File{{"key", []byte("key " + tag), 0o600}, {"cert", []byte("cert " + tag), 0o644}, {"conf", []byte("conf " + tag), 0o644}}
	}
	names := []string{"key", "cert", "conf"}
	steps := []string{"generation written", "linked key", "linked cert", "names linked", "switched"}
	for _, before := range []string{"files", "set"} {
		for _, stop := range steps {
			t.Run(before+"/"+stop, func(t *testing.T) {
				dir := t.TempDir()
				for _, f := range set("A") {
					if before == "files" {
						if err := Write(filepath.Join(dir, f.Name), f.Data, f.Perm); err != nil {
							t.Fatal(err)
						}
					}
				}
				if before == "set" {
					if err := WriteSet(dir, set("A")); err != nil {
						t.Fatal(err)
					}
				}
				old, next := "key A|cert A|conf A", "key B|cert B|conf B"
				if got := readSet(t, dir, names...); got != old {
					t.Fatalf("before: %q", got)
				}
				setStep = func(s string) {
					if s == stop {
						runtime.Goexit()
					}
				}
				defer func() { setStep = func(string) {} }()
				done := make(chan struct{})
				go func() {
					defer close(done)
					_ = WriteSet(dir, set("B"))
				}()
				<-done
				setStep = func(string) {}
				got := readSet(t, dir, names...)
				if got != old && got != next {
					t.Fatalf("stopped at %q: the names read %q, a mixture", stop, got)
				}
				sd, err := SetDir(dir)
				if err != nil {
					t.Fatal(err)
				}
				if viaSet := readSet(t, sd, names...); viaSet != got {
					t.Fatalf("stopped at %q: SetDir holds %q, the names %q", stop, viaSet, got)
				}
				if err := WriteSet(dir, set("C")); err != nil {
					t.Fatal(err)
				}
				if got := readSet(t, dir, names...); got != "key C|cert C|conf C" {
					t.Fatalf("the next set: %q", got)
				}
				if st, err := os.Stat(filepath.Join(dir, "key")); err != nil || st.Mode().Perm() != 0o600 {
					t.Fatalf("key: %v %v", st, err)
				}
				ents, _ := os.ReadDir(dir)
				gens := 0
				for _, e := range ents {
					if strings.HasPrefix(e.Name(), setPrefix) {
						gens++
					} else if !slices.Contains(append(names, CurrentLink), e.Name()) {
						t.Errorf("left in the directory: %s", e.Name())
					}
				}
				if gens != 1 {
					t.Fatalf("%d generations left, want 1", gens)
				}
			})
		}
	}
}
