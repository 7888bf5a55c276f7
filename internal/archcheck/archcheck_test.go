package archcheck

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/tacline/tacline"

// rows reads the package table of docs/architecture.md: package -> the
// packages it may import ("*" for any).
func rows(t *testing.T, doc io.Reader) map[string][]string {
	t.Helper()
	table := map[string][]string{}
	sc := bufio.NewScanner(doc)
	in := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "| package | owns | may import |") {
			in = true
			continue
		}
		if !in {
			continue
		}
		if !strings.HasPrefix(line, "|") {
			break
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 3 || strings.HasPrefix(strings.TrimSpace(cells[0]), "---") {
			continue
		}
		pkg := strings.Trim(strings.TrimSpace(cells[0]), "`")
		if _, dup := table[pkg]; dup {
			t.Errorf("docs/architecture.md: package %s has two rows", pkg)
		}
		var allowed []string
		for _, a := range strings.Split(cells[2], ",") {
			if a = strings.TrimSpace(a); a != "" && a != "-" {
				allowed = append(allowed, a)
			}
		}
		table[pkg] = allowed
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(table) == 0 {
		t.Fatal("docs/architecture.md: no package table (a line starting with | package | owns | may import |)")
	}
	return table
}

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string // transitive
}

// packages lists the module's packages and their non-test imports.
func packages(t *testing.T, root string) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports,Deps", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestImportsMatchArchitectureTable(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(root, "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	table := rows(t, f)
	seen := map[string]bool{}
	for _, p := range packages(t, root) {
		name := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		seen[name] = true
		allowed, ok := table[name]
		if !ok {
			t.Errorf("package %s has no row in docs/architecture.md's package table: add one saying what it owns and what it may import", name)
			continue
		}
		var bad []string
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module+"/") {
				continue
			}
			dep := strings.TrimPrefix(imp, module+"/")
			if dep == "tacerr" || permitted(allowed, dep) {
				continue
			}
			bad = append(bad, dep)
		}
		if len(bad) > 0 {
			sort.Strings(bad)
			t.Errorf("package %s imports %s, which its row in docs/architecture.md does not allow (it may import: %s); fix the import or the design and the table", name, strings.Join(bad, ", "), strings.Join(allowed, ", "))
		}
	}
	for name := range table {
		if !seen[name] {
			t.Errorf("docs/architecture.md names package %s, which does not exist: remove its row", name)
		}
	}
}

func permitted(allowed []string, dep string) bool {
	for _, a := range allowed {
		if a == "*" || a == dep {
			return true
		}
	}
	return false
}

// TestTableParser checks the parser on a table that breaks the rules, so the
// check above cannot pass by reading nothing.
func TestTableParser(t *testing.T) {
	doc := "intro\n\n| package | owns | may import |\n|---|---|---|\n| `a` | x | - |\n| `b` | y | a, c |\n| `cmd/z` | z | * |\n\nafter\n| `ignored` | q | r |\n"
	got := rows(t, strings.NewReader(doc))
	if len(got) != 3 || len(got["a"]) != 0 || strings.Join(got["b"], ",") != "a,c" || !permitted(got["cmd/z"], "anything") {
		t.Fatalf("rows = %v", got)
	}
	if permitted(got["b"], "d") || !permitted(got["b"], "c") {
		t.Fatal("permitted is wrong")
	}
}

// tools are the packages only tools, benchmarks and tests may use: a
// development environment and the line simulator.
var tools = []string{"devenv", "factory/sim"}

// toolUser reports whether package name may depend on the tools: the
// binary, the tools themselves, benchmarks, end-to-end tests and test
// helper packages.
func toolUser(name string) bool {
	switch {
	case name == "cmd/tacline", name == "devenv", name == "factory/sim", name == "test", name == "deploy",
		name == "bench", strings.HasPrefix(name, "bench/"), strings.HasSuffix(name, "test"), strings.HasSuffix(name, "/e2e"):
		return true
	}
	return false
}

// TestProductionNeverImportsTools: no production package depends, even
// through others, on devenv or factory/sim.
func TestProductionNeverImportsTools(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range packages(t, root) {
		name := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		if toolUser(name) {
			continue
		}
		for _, dep := range p.Deps {
			for _, tool := range tools {
				if dep == module+"/"+tool {
					t.Errorf("production package %s depends on %s, which only cmd/tacline, benchmarks and tests may use", name, tool)
				}
			}
		}
	}
	if !toolUser("bench/verifybench") || toolUser("factory") || toolUser("server") {
		t.Fatal("toolUser classifies packages wrongly")
	}
}
