package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/tacline/tacline/bench"
	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/store"
)

func init() { benchCommands = append(benchCommands, newBenchPeerCmd) }

func newBenchPeerCmd() *cobra.Command {
	var o bench.PeerOptions
	var driver string
	var asJSON bool
	c := &cobra.Command{
		Use:   "peer",
		Short: "Side by side in one run: step-ca's /1.0/sign alone, tacline provisioning (HSM issuer), tacline through step-ca",
		Long: `Alternating rounds on the same SoftHSM2 token and machine: (a) step-ca's
/1.0/sign with pre-made CSRs and one-time tokens from --stepca-clients
concurrent clients, (b) tacline end-to-end provisioning with its in-process
HSM issuer, (c) tacline provisioning through step-ca (issuer kind stepca).
With --offered-share F (or --offered-rate R), alternating open-loop rounds
follow: step-ca and tacline (HSM issuer) are each offered F times step-ca's
closed-loop rate (or R per second), with latencies measured from each
request's scheduled start. step-ca is bin/step-ca (make stepca). See
docs/benchmarks.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.OfferedShare < 0 || o.OfferedShare > 1 {
				return fmt.Errorf("--offered-share must be between 0 and 1 (a share of step-ca's closed-loop rate), got %v", o.OfferedShare)
			}
			if o.OfferedRate < 0 {
				return fmt.Errorf("--offered-rate must be positive (requests per second), got %v", o.OfferedRate)
			}
			o.Driver = store.Dialect(driver)
			if o.Driver != store.SQLite && o.Driver != store.Postgres {
				return fmt.Errorf("--db must be sqlite or postgres")
			}
			bin, err := os.Executable()
			if err != nil {
				return err
			}
			o.Bin, o.AdminDSN = bin, defaultAdminDSN()
			if o.StepCABin, err = devenv.StepCABinary(bin); err != nil {
				return err
			}
			if o.Dir == "" {
				o.Dir = filepath.Join("var", "bench-peer")
			}
			if !asJSON {
				o.Log = cmd.ErrOrStderr()
			}
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			res, err := bench.Peer(ctx, o)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), res)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "step-ca /1.0/sign alone: %.0f certificates/s, %.0f us CPU each, p50 %.1f ms, p99 %.1f ms (%d clients)\n",
				res.StepCACertsPerSecond, res.StepCACPUusPerCert, res.StepCAP50ms, res.StepCAP99ms, res.StepCAClients)
			fmt.Fprintf(w, "tacline (%s, HSM issuer): %.0f devices/s, %.0f us CPU each, p50 %.1f ms, p99 %.1f ms (%d stations)\n",
				res.DB, res.TaclineDevicesPerSecond, res.TaclineCPUusPerDevice, res.TaclineP50ms, res.TaclineP99ms, res.Stations)
			fmt.Fprintf(w, "tacline through step-ca: %.0f devices/s, %.0f us CPU each (both processes), p50 %.1f ms, p99 %.1f ms\n",
				res.ViaStepCADevicesPerSecond, res.ViaStepCACPUusPerDevice, res.ViaStepCAP50ms, res.ViaStepCAP99ms)
			if res.OfferedRate > 0 {
				fmt.Fprintf(w, "offered %.0f/s: step-ca delivered %.0f/s, p50 %.1f ms, p99 %.1f ms, %.0f us CPU each; tacline delivered %.0f/s, p50 %.1f ms, p99 %.1f ms, %.0f us CPU each\n",
					res.OfferedRate, res.OpenStepCAPerSecond, res.OpenStepCAP50ms, res.OpenStepCAP99ms, res.OpenStepCACPUusCert,
					res.OpenTaclinePerSecond, res.OpenTaclineP50ms, res.OpenTaclineP99ms, res.OpenTaclineCPUusDevice)
			}
			fmt.Fprintf(w, "ratio %.2f, cpu ratio %.2f, %d errors, ledger ok %v, load average %s, CPU stolen by the hypervisor %.1f%%\n", res.Ratio, res.CPURatio, res.Errors, res.LedgerOK, res.LoadAverage, 100*res.CPUStealShare)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&driver, "db", "sqlite", "sqlite or postgres")
	f.IntVar(&o.Stations, "stations", 16, "concurrent stations in the tacline rounds")
	f.IntVar(&o.StepCAClients, "stepca-clients", 8, "concurrent /1.0/sign clients in the step-ca rounds")
	f.DurationVar(&o.Round, "round", 5*time.Second, "measured duration of one round")
	f.IntVar(&o.Rounds, "rounds", 2, "alternating rounds of each kind")
	f.Float64Var(&o.OfferedShare, "offered-share", 0, "then offer both this share of step-ca's closed-loop rate, open loop (issue 14's 500/s was 0.415 of its step-ca)")
	f.Float64Var(&o.OfferedRate, "offered-rate", 0, "then offer both this many requests/s, open loop (instead of --offered-share)")
	f.StringVar(&o.Dir, "dir", "", "working directory, replaced (default var/bench-peer)")
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	return c
}
