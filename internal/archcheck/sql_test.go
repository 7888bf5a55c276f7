package archcheck

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// sqlImports are the packages that speak SQL: database/sql, sqlx and the
// drivers of both databases (any package under these paths).
var sqlImports = []string{
	"database/sql",
	"github.com/jmoiron/sqlx",
	"github.com/jackc/pgx",
	"github.com/jackc/pgconn",
	"github.com/lib/pq",
	"github.com/mattn/go-sqlite3",
	"modernc.org/sqlite",
}

// sqlAllowed are the packages outside store's tree that may speak SQL, each
// with its reason.
var sqlAllowed = map[string]string{
	// The register simulator stands for another system (the national
	// register) with its own database, not the ledger.
	"register/sim": "the register simulator's own database",
}

func speaksSQL(imp string) bool {
	for _, s := range sqlImports {
		if imp == s || strings.HasPrefix(imp, s+"/") {
			return true
		}
	}
	return false
}

// TestOnlyStoreSpeaksSQL fails when a package outside store (and its
// subpackages) imports database/sql, sqlx or a database driver in its
// non-test files: the ledger's SQL lives in store, behind typed methods.
func TestOnlyStoreSpeaksSQL(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	stores := 0
	for _, p := range packages(t, root) {
		name := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		var bad []string
		for _, imp := range p.Imports {
			if speaksSQL(imp) {
				bad = append(bad, imp)
			}
		}
		if len(bad) == 0 {
			continue
		}
		if name == "store" {
			stores++
		}
		if name == "store" || strings.HasPrefix(name, "store/") || sqlAllowed[name] != "" {
			continue
		}
		sort.Strings(bad)
		t.Errorf("package %s imports %s: only store (and its subpackages) speaks SQL; add a typed method to store instead", name, strings.Join(bad, ", "))
	}
	if stores != 1 {
		t.Fatal("store itself imports no SQL package: the check reads nothing")
	}
}

// TestSpeaksSQL checks the matcher, so the check above cannot pass by
// matching nothing.
func TestSpeaksSQL(t *testing.T) {
	for imp, want := range map[string]bool{
		"database/sql":                   true,
		"database/sql/driver":            true,
		"github.com/jmoiron/sqlx":        true,
		"github.com/jackc/pgx/v5/stdlib": true,
		"github.com/mattn/go-sqlite3":    true,
		"database/sqlx":                  false,
		"encoding/json":                  false,
	} {
		if got := speaksSQL(imp); got != want {
			t.Errorf("speaksSQL(%q) = %v, want %v", imp, got, want)
		}
	}
}

// ledgerSQL matches SQL that names a table: FROM, INTO, UPDATE, JOIN or
// TABLE (in capitals, as the project writes SQL; prose says "from") followed
// by the table's name.
var ledgerSQL = regexp.MustCompile(`\b(?:FROM|INTO|UPDATE|JOIN|TABLE)\s+([a-z_][a-z0-9_]*)`)

// ledgerTables reads the tables the store's migrations create.
func ledgerTables(t *testing.T, root string) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "store", "migrations", "*", "*.sql"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no migrations under store/migrations (%v)", err)
	}
	create := regexp.MustCompile(`(?i)CREATE TABLE (?:IF NOT EXISTS )?([a-z_][a-z0-9_]*)`)
	tables := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range create.FindAllStringSubmatch(string(b), -1) {
			tables[strings.ToLower(m[1])] = true
		}
	}
	if !tables["imeis"] || !tables["audit_leaves"] || !tables["register_outbox"] {
		t.Fatalf("the migrations' tables %v lack imeis, audit_leaves or register_outbox: the check reads nothing", tables)
	}
	return tables
}

// TestOnlyStoreNamesLedgerTables fails when a non-test Go file outside
// store (and the register simulator, whose database is its own) holds SQL
// naming a ledger table.
func TestOnlyStoreNamesLedgerTables(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	tables := ledgerTables(t, root)
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == "store" || rel == "register/sim" || strings.HasPrefix(d.Name(), ".") || rel == "var" || rel == "node_modules" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range ledgerSQL.FindAllStringSubmatch(string(b), -1) {
			if tables[m[1]] {
				t.Errorf("%s names the ledger table %s in SQL (%q): the ledger's SQL lives in store, behind typed methods", rel, m[1], m[0])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
