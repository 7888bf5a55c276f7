package devenv

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/tacline/tacline/config"
	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/factory/sim"
	"github.com/tacline/tacline/server"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// DemoOptions configure Demo.
type DemoOptions struct {
	Dir      string
	Stations int
	Devices  int    // per station
	Bin      string // the tacline binary (the server runs as a child process)
	Out      io.Writer
	Progress io.Writer // the simulator's progress bar (a terminal)
	// Issuer is who signs device certificates: "hsm" (tacline's HSM, the
	// default) or "stepca" (a development step-ca, tacline as its RA).
	Issuer string
	// Serve keeps the server running after the checks, until ctx ends
	// (Ctrl-C), so that a person can look at the console.
	Serve bool
}

// DemoResult is what the demo did.
type DemoResult struct {
	Env     *Env
	Summary sim.Summary
	Check   store.CheckReport
}

// Demo runs the main job end to end: a fresh environment, the server as a
// child process on a free loopback port, the simulated line provisioning
// every station's devices (each returned identity verified), the server
// stopped cleanly, and the ledger checked.
func Demo(ctx context.Context, o DemoOptions) (*DemoResult, error) {
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	start := time.Now()
	fmt.Fprintf(out, "tacline demo in %s\n", o.Dir)
	fmt.Fprintln(out, "1. setting up: HSM token, key ceremony, catalogue, pools, stations")
	env, err := Setup(ctx, Options{Dir: o.Dir, Stations: o.Stations, Log: out})
	if err != nil {
		return nil, err
	}
	switch o.Issuer {
	case "", config.IssuerHSM:
	case config.IssuerStepCA:
		bin, err := StepCABinary(o.Bin)
		if err != nil {
			return nil, err
		}
		sca, err := env.UseStepCA(ctx, bin)
		if err != nil {
			return nil, err
		}
		defer sca.Stop()
		fmt.Fprintf(out, "   step-ca on %s, its intermediate key in the SoftHSM2 token (log: %s); tacline signs its tokens as RA\n", sca.URL, filepath.Join(sca.Dir, "step-ca.log"))
	default:
		return nil, tacerr.Field(tacerr.InvalidInput, "issuer", "must be hsm or stepca, got %q", o.Issuer)
	}
	fmt.Fprintln(out, "2. starting the national register simulator and the server (SQLite ledger, SoftHSM2, mutual TLS on a free loopback port)")
	reg, err := StartRegisterSim(ctx, o.Bin, filepath.Join(env.Dir, "register-sim.db"), filepath.Join(env.Dir, "register-sim.log"))
	if err != nil {
		return nil, err
	}
	defer reg.Stop(10 * time.Second)
	if err := env.SetRegisterURL(reg.URL); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "   register simulator on %s\n", reg.URL)
	proc, err := StartServer(ctx, o.Bin, env.ConfigPath, filepath.Join(env.Dir, "server.log"))
	if err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			proc.Kill()
		}
	}()
	fmt.Fprintf(out, "   serving on %s (log: %s)\n", proc.URL, proc.LogPath)

	fmt.Fprintf(out, "3. simulating the line: %d stations x %d devices, every certificate verified\n", len(env.Stations), o.Devices)
	creds, err := factory.LoadCreds(env.CredsDir, 0)
	if err != nil {
		return nil, err
	}
	devOut, err := os.Create(filepath.Join(env.ExportsDir, "devices.ndjson"))
	if err != nil {
		return nil, err
	}
	defer devOut.Close()
	keys := filepath.Join(env.ExportsDir, "device-keys")
	sum, simErr := sim.Simulate(ctx, sim.Config{ServerURL: proc.URL, ServerCAFile: creds.ServerCAFile, RootsFile: creds.RootsFile,
		Stations: creds.Stations, Devices: o.Devices, Progress: o.Progress, DevicesOut: devOut, KeysDir: keys})
	if err := devOut.Close(); err != nil && simErr == nil {
		simErr = err
	}
	fmt.Fprintf(out, "   %d devices provisioned and verified in %.1fs (%.0f devices/s, p50 %.1f ms, p99 %.1f ms), %d failed\n",
		sum.Devices, sum.ElapsedSeconds, sum.DevicesPerSecond, sum.P50ms, sum.P99ms, sum.Failed)

	ledger, err := store.Open(ctx, env.Config.Database)
	if err != nil {
		return nil, err
	}
	rrep, err := WaitDelivered(ctx, ledger, 60*time.Second)
	ledger.Close()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "   register: %d events acknowledged, %d pending, %d rejected, %d clone alerts\n",
		rrep.Counts["acknowledged"], rrep.Pending, rrep.Counts["rejected"], rrep.CloneAlerts)
	if simErr == nil {
		fmt.Fprintln(out, "   authenticity checks as the regulator (POST /v1/challenges, POST /v1/verify):")
		if _, err := CheckAuthenticity(ctx, env, proc.URL, out); err != nil {
			return nil, err
		}
		if _, err := ExportCRLs(ctx, env, proc.URL); err != nil {
			return nil, err
		}
		fmt.Fprintln(out, "   CRLs of the issuing CA and the device root (signed in the HSM) exported for outside verifiers")
	}
	if o.Serve && simErr == nil {
		fmt.Fprintln(out, "   the server keeps running until you interrupt the demo (Ctrl-C):")
		printConsole(out, env, proc.URL)
		<-ctx.Done()
		// Interrupted: the rest of the demo still stops the server and
		// checks the ledger.
		ctx = context.WithoutCancel(ctx)
		fmt.Fprintln(out)
	}
	fmt.Fprintln(out, "4. stopping the server")
	stopped = true
	if err := proc.Stop(30 * time.Second); err != nil {
		return nil, fmt.Errorf("server did not stop cleanly: %w (see %s)", err, proc.LogPath)
	}
	if simErr != nil {
		return nil, simErr
	}
	rep, err := env.CheckLedger(ctx)
	if err != nil {
		return nil, err
	}
	if err := rep.Err(); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "5. ledger check: OK, %d IMEIs in %d pools, every SNR below each high-water mark accounted for once\n", rep.IMEIs, rep.Pools)
	fmt.Fprintf(out, "\ndone in %.1fs. Where things are:\n", time.Since(start).Seconds())
	for _, l := range [][2]string{
		{"configuration", env.ConfigPath},
		{"devices (NDJSON)", filepath.Join(env.ExportsDir, "devices.ndjson")},
		{"CA chain", filepath.Join(env.ExportsDir, "ca-chain.pem")},
		{"device root (anchor)", filepath.Join(env.ExportsDir, "device-root.pem")},
		{"CRLs (PEM)", filepath.Join(env.ExportsDir, "crls.pem")},
		{"device keys (demo only)", keys},
		{"station credentials", env.CredsDir},
		{"role identities", env.IdentitiesDir},
		{"server log", proc.LogPath},
	} {
		fmt.Fprintf(out, "  %-24s %s\n", l[0], l[1])
	}
	name := CommandName(o.Bin)
	fmt.Fprintf(out, "\nTry: %s --config %s pool list\n     %s --config %s ledger check\n", name, env.ConfigPath, name, env.ConfigPath)
	fmt.Fprintf(out, "\nWeb console (run `%s --config %s serve`, or `%s demo --serve` to keep the demo's server up):\n", name, env.ConfigPath, name)
	printConsole(out, env, "https://"+env.Config.Server.Listen)
	return &DemoResult{Env: env, Summary: sum, Check: rep}, nil
}

// CheckLedger opens the environment's ledger and checks its invariants.
func (e *Env) CheckLedger(ctx context.Context) (store.CheckReport, error) {
	db, err := store.Open(ctx, e.Config.Database)
	if err != nil {
		return store.CheckReport{}, err
	}
	defer db.Close()
	return db.Check(ctx)
}

// Reopen returns the environment Setup made in dir earlier, as it is now
// (configuration, credentials, ledger), for another run on it.
func Reopen(dir string) (*Env, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	env := &Env{Dir: dir, ConfigPath: filepath.Join(dir, "tacline.yaml"), CredsDir: filepath.Join(dir, "stations"),
		ExportsDir: filepath.Join(dir, "exports"), IdentitiesDir: filepath.Join(dir, "identities")}
	if env.Config, err = config.Load(env.ConfigPath); err != nil {
		return nil, err
	}
	return env, nil
}

// OpenLedger opens the environment's ledger as the server does: the audit
// log and the register outbox attached as sinks, so ledger changes made
// through it emit their events.
func (e *Env) OpenLedger(ctx context.Context) (*store.DB, error) {
	return server.OpenLedger(ctx, e.Config)
}

// printConsole prints the console's and the check page's addresses on the
// server at url and the operator identity to open the console with.
func printConsole(out io.Writer, env *Env, url string) {
	op := filepath.Join(env.IdentitiesDir, "person-operator")
	fmt.Fprintf(out, "  %-24s %s/console/\n", "staff console", url)
	fmt.Fprintf(out, "  %-24s %s/check\n", "public IMEI check", url)
	fmt.Fprintf(out, "  %-24s %s, %s\n", "operator identity", filepath.Join(op, "cert.pem"), filepath.Join(op, "key.pem"))
	fmt.Fprintf(out, "  %-24s %s\n", "server CA to trust", filepath.Join(env.CredsDir, "server-ca.pem"))
	fmt.Fprintf(out, "  %-24s openssl pkcs12 -export -in %s -inkey %s -out operator.p12\n", "for a browser", filepath.Join(op, "cert.pem"), filepath.Join(op, "key.pem"))
	fmt.Fprintf(out, "  %-24s curl --cacert %s --cert %s --key %s %s/console/\n", "or", filepath.Join(env.CredsDir, "server-ca.pem"),
		filepath.Join(op, "cert.pem"), filepath.Join(op, "key.pem"), url)
}
