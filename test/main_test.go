package test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// taclineBin is the tacline binary the tests run.
var taclineBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if bin := os.Getenv("TACLINE_BIN"); bin != "" {
		abs, err := filepath.Abs(bin)
		if err != nil {
			fmt.Fprintf(os.Stderr, "TACLINE_BIN=%s: %v\n", bin, err)
			return 2
		}
		if _, err := os.Stat(abs); err != nil {
			fmt.Fprintf(os.Stderr, "TACLINE_BIN=%s: %v (run make build, or unset TACLINE_BIN to build it here)\n", bin, err)
			return 2
		}
		taclineBin = abs
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "tacline-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer os.RemoveAll(dir)
	taclineBin = filepath.Join(dir, "tacline")
	goCmd, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintf(os.Stderr, "build tacline: the go command is not on PATH (or set TACLINE_BIN): %v\n", err)
		return 2
	}
	build := exec.Command(goCmd, "build", "-o", taclineBin, "./cmd/tacline")
	build.Dir = ".." // the module root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build ./cmd/tacline: %v\n%s", err, out)
		return 2
	}
	return m.Run()
}

// result is what a finished tacline process left.
type result struct {
	code           int
	stdout, stderr string
}

// tacline runs the binary with args to completion (bounded by timeout) and
// returns its exit status and output. Failing to start it is fatal.
func tacline(t *testing.T, timeout time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, taclineBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("tacline %v did not finish within %s\nstdout:\n%s\nstderr:\n%s", args, timeout, stdout.String(), stderr.String())
	}
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run tacline %v: %v", args, err)
		}
		r.code = ee.ExitCode()
	}
	return r
}

// setupEnv makes a development environment with stations enrolled, on a
// fresh SQLite file or a fresh PostgreSQL database dropped when t ends.
func setupEnv(t *testing.T, ctx context.Context, driver store.Dialect, stations int) *devenv.Env {
	t.Helper()
	opts := devenv.Options{Dir: filepath.Join(t.TempDir(), "env"), Stations: stations, Driver: driver}
	if driver == store.Postgres {
		opts.DSN = storetest.PostgresDSN(t)
	}
	env, err := devenv.Setup(ctx, opts)
	if err != nil {
		t.Fatalf("set up the environment: %v", err)
	}
	return env
}
