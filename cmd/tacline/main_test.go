package main

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// The CLI script tests. Every testdata/script/*.txtar file is one test run
// against the real tacline main in a subprocess (testscript.Main re-executes
// this test binary as "tacline"), in its own temporary $WORK directory.
//
// To add scripts for your area, drop testdata/script/<area>*.txtar files;
// nothing here needs editing. Scripts see every TACLINE_* variable of the
// test environment (TACLINE_TEST_PG_DSN always set, defaulting to the local
// server); $TMPDIR lies inside $WORK and $HOME is unset (/no-home), so
// write generated files under $WORK. If your scripts need
// an extra custom command or setup step, register it from an init function
// in your own _test.go file of this package: scriptCmds["name"] = ... or
// scriptSetups = append(scriptSetups, ...).
//
// Run one script: go test ./cmd/tacline -run 'TestScripts/imei_check'.
// Rewrite the cmp files of a script from the actual output: add -update.

var updateScripts = flag.Bool("update", false, "rewrite the expected output files of the script tests")

// defaultPGDSN is the admin DSN tests use when TACLINE_TEST_PG_DSN is unset.
const defaultPGDSN = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

var (
	// scriptCmds are extra commands available in every script.
	scriptCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){}
	// scriptSetups run before every script, after the environment is set.
	scriptSetups []func(*testscript.Env) error
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){"tacline": main})
}

func TestScripts(t *testing.T) {
	t.Parallel()
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		UpdateScripts:       *updateScripts,
		RequireUniqueNames:  true,
		Cmds:                scriptCmds,
		ContinueOnError:     false,
		RequireExplicitExec: false,
		Setup: func(env *testscript.Env) error {
			for _, kv := range os.Environ() {
				if strings.HasPrefix(kv, "TACLINE_") {
					k, v, _ := strings.Cut(kv, "=")
					env.Setenv(k, v)
				}
			}
			if env.Getenv("TACLINE_TEST_PG_DSN") == "" {
				env.Setenv("TACLINE_TEST_PG_DSN", defaultPGDSN)
			}
			for _, f := range scriptSetups {
				if err := f(env); err != nil {
					return err
				}
			}
			return nil
		},
	})
}
