// Package tacerrtest lists the codes that package tacerr declares, read
// from its source, so tests can prove that the table (tacerr.Specs), the
// HTTP mapping and docs/errors.md each cover every code, including one
// added without its row.
package tacerrtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/tacline/tacline/tacerr"
)

// Dir is the directory of package tacerr's source.
func Dir(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("tacerrtest: cannot find its own source file")
	}
	return filepath.Join(filepath.Dir(file), "..")
}

// DeclaredCodes returns every constant of type Code declared in package
// tacerr's non-test source files, in declaration order.
func DeclaredCodes(t testing.TB) []tacerr.Code {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(Dir(t), "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var out []tacerr.Code
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range af.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, sp := range gd.Specs {
				vs := sp.(*ast.ValueSpec)
				if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Code" {
					continue
				}
				for _, v := range vs.Values {
					lit, ok := v.(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						t.Fatalf("%s: a Code constant that is not a string literal", fset.Position(v.Pos()))
					}
					s, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					out = append(out, tacerr.Code(s))
				}
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("tacerrtest: no Code constants found in package tacerr")
	}
	return out
}
