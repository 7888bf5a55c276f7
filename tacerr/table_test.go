package tacerr_test

import (
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/tacerr"
	"github.com/tacline/tacline/tacerr/tacerrtest"
)

var update = flag.Bool("update", false, "rewrite docs/errors.md from the table")

// TestTableCoversEveryCode fails on a declared code without its row, a row
// without its code, and a row whose retryability and Retry-After disagree.
func TestTableCoversEveryCode(t *testing.T) {
	declared := map[tacerr.Code]bool{}
	for _, c := range tacerrtest.DeclaredCodes(t) {
		declared[c] = true
		if _, ok := tacerr.Lookup(c); !ok {
			t.Errorf("code %s has no row in the table (tacerr/table.go)", c)
		}
	}
	seen := map[tacerr.Code]bool{}
	for _, s := range tacerr.Specs() {
		if seen[s.Code] {
			t.Errorf("code %s has two rows", s.Code)
		}
		seen[s.Code] = true
		if !declared[s.Code] {
			t.Errorf("row %s is not a declared code", s.Code)
		}
		if s.Status < 400 || s.Status > 599 || http.StatusText(s.Status) == "" {
			t.Errorf("%s: status %d is not an HTTP error status", s.Code, s.Status)
		}
		if s.Retryable != (s.RetryAfter > 0) || s.RetryAfter%time.Second != 0 {
			t.Errorf("%s: retryable %v with Retry-After %s; want whole seconds exactly when retryable", s.Code, s.Retryable, s.RetryAfter)
		}
		if s.Title == "" || s.Meaning == "" || strings.Contains(s.Meaning, "|") {
			t.Errorf("%s: a title and a one-line meaning without '|' are required", s.Code)
		}
	}
}

func TestErrorRetryability(t *testing.T) {
	tests := []struct {
		name      string
		err       *tacerr.Error
		retryable bool
		after     time.Duration
	}{
		{"unavailable", tacerr.New(tacerr.Unavailable, "db down"), true, time.Second},
		{"hsm unavailable", tacerr.Wrap(tacerr.HSMUnavailable, fmt.Errorf("x"), "sign"), true, time.Second},
		{"pin refused needs a person", tacerr.New(tacerr.HSMPINIncorrect, "pin"), false, 0},
		{"hint on a retryable code", tacerr.New(tacerr.RateLimited, "slow").WithRetryAfter(2500 * time.Millisecond), true, 3 * time.Second},
		{"hint ignored on a final code", tacerr.New(tacerr.InvalidInput, "bad").WithRetryAfter(time.Minute), false, 0},
		{"unknown code is internal", tacerr.New("no_such_code", "?"), false, 0},
	}
	for _, tc := range tests {
		if got := tc.err.Retryable(); got != tc.retryable {
			t.Errorf("%s: Retryable = %v, want %v", tc.name, got, tc.retryable)
		}
		if got := tacerr.IsRetryable(fmt.Errorf("ctx: %w", tc.err)); got != tc.retryable {
			t.Errorf("%s: IsRetryable through a wrap = %v, want %v", tc.name, got, tc.retryable)
		}
		if got := tc.err.RetryAfter(); got != tc.after {
			t.Errorf("%s: RetryAfter = %s, want %s", tc.name, got, tc.after)
		}
	}
	p := tacerr.Prefixed("open token", tacerr.Field(tacerr.HSMPINLocked, "hsm.pin", "locked"), tacerr.HSMUnavailable)
	if p.Code != tacerr.HSMPINLocked || p.Field != "hsm.pin" || p.Message != "open token: locked" {
		t.Errorf("Prefixed = %+v, want code, field kept and the message prefixed", p)
	}
	if p := tacerr.Prefixed("open token", fmt.Errorf("plain"), tacerr.HSMUnavailable); p.Code != tacerr.HSMUnavailable {
		t.Errorf("Prefixed of a plain error = %s, want the fallback code", p.Code)
	}
}

// errorsDoc renders docs/errors.md from the table.
func errorsDoc() []byte {
	var b bytes.Buffer
	b.WriteString(`# Error codes

Generated from the table in ` + "`tacerr/table.go`" + ` by ` + "`go test ./tacerr -update`" + `;
a test fails when this file, the table or the HTTP mapping misses a code.

Every error tacline returns carries one of these codes: in the ` + "`code`" + ` of
an API problem document (docs/api.md, "Errors"), and in the CLI's error
messages. Codes never change meaning; new ones may be added.

- **retryable**: the same request (same request id) may succeed later
  without a person acting. Retry it with backoff; the station client does
  (factory, within ` + "`--retry-budget`" + `, default 2 minutes).
- **Retry-After**: sent with every retryable answer, never with another.
  Wait at least that long. A ` + "`rate_limited`" + ` answer carries the time until
  the caller's quota refills instead of the default below.
- A 503 that is not retryable needs an operator (a refused PIN, a missing
  key): retrying will not help.
- **detail**: whether the problem's ` + "`detail`" + ` is the error's own message;
  otherwise it is generic and the cause is only in the server's log.

| code | HTTP | retryable | Retry-After | detail | meaning |
|---|---|---|---|---|---|
`)
	yn := map[bool]string{true: "yes", false: "no"}
	for _, s := range tacerr.Specs() {
		ra := "-"
		if s.RetryAfter > 0 {
			ra = fmt.Sprintf("%d s", s.RetryAfter/time.Second)
		}
		fmt.Fprintf(&b, "| `%s` | %d | %s | %s | %s | %s |\n", s.Code, s.Status, yn[s.Retryable], ra, yn[s.Detail], s.Meaning)
	}
	return b.Bytes()
}

// TestErrorsDoc fails when docs/errors.md is not the table's rendering.
func TestErrorsDoc(t *testing.T) {
	path := filepath.Join(tacerrtest.Dir(t), "..", "docs", "errors.md")
	want := errorsDoc()
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (generate it: go test ./tacerr -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("docs/errors.md is not the table's rendering: run go test ./tacerr -update")
	}
	for _, c := range tacerrtest.DeclaredCodes(t) {
		if !bytes.Contains(got, []byte("| `"+string(c)+"` |")) {
			t.Errorf("docs/errors.md has no row for %s", c)
		}
	}
}

// TestNoLiteralErrors fails on a tacerr.Error composite literal outside
// package tacerr: values are made by the constructors only.
func TestNoLiteralErrors(t *testing.T) {
	root := filepath.Join(tacerrtest.Dir(t), "..")
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "var", "node_modules", ".git", "testdata":
				return filepath.SkipDir
			}
			if path != root && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || filepath.Dir(path) == tacerrtest.Dir(t) {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if cl, ok := n.(*ast.CompositeLit); ok {
				if sel, ok := cl.Type.(*ast.SelectorExpr); ok && sel.Sel.Name == "Error" {
					if id, ok := sel.X.(*ast.Ident); ok && id.Name == "tacerr" {
						t.Errorf("%s: tacerr.Error literal; use tacerr.New, Field or Wrap", fset.Position(cl.Pos()))
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
