package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/tacline/tacline/api"
	"github.com/tacline/tacline/bench"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

func init() {
	benchCommands = append(benchCommands, newBenchProvisionCmd, newBenchHSMCmd)
}

func newBenchProvisionCmd() *cobra.Command {
	var o bench.ProvisionOptions
	var driver string
	var asJSON, compareAudit bool
	var rounds, runs int
	c := &cobra.Command{
		Use:   "provision",
		Short: "End-to-end provisioning rate: the server as a separate process over mutual TLS, SoftHSM2, a durable ledger",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.ServerProcs < 0 {
				return tacerr.Field(tacerr.InvalidInput, "server-gomaxprocs", "--server-gomaxprocs must be 0 (Go's default) or more, got %d", o.ServerProcs)
			}
			if runs < 1 {
				return tacerr.Field(tacerr.InvalidInput, "runs", "--runs must be at least 1, got %d", runs)
			}
			if runs > 1 && (o.Prefill > 0 || compareAudit) {
				return tacerr.Field(tacerr.InvalidInput, "runs", "--runs repeats a plain run; --prefill and --compare-audit repeat theirs with --rounds")
			}
			var err error
			if o.Driver, o.Bin, err = serverBench(driver, &o.Dir, "bench-provision"); err != nil {
				return err
			}
			o.AdminDSN = defaultAdminDSN()
			if !asJSON {
				o.Log = cmd.ErrOrStderr()
			}
			o.Progress = cmd.ErrOrStderr() // the prefill's progress (rows/s, ETA)
			o.PrefillRounds = rounds
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			if compareAudit {
				c, err := bench.CompareAudit(ctx, o, rounds)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(cmd.OutOrStdout(), c)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "without audit %.0f devices/s (%.0f us CPU/device), with audit %.0f devices/s (%.0f us CPU/device): throughput cost %.1f%%\n",
					c.Without.DevicesPerSecond, c.Without.ServerCPUusPerDevice, c.With.DevicesPerSecond, c.With.ServerCPUusPerDevice, 100*c.ThroughputCost)
				return nil
			}
			if runs > 1 {
				r, err := bench.Repeat(ctx, o, runs)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(cmd.OutOrStdout(), r)
				}
				w := cmd.OutOrStdout()
				for i, res := range r.Runs {
					fmt.Fprintf(w, "run %d: %.0f devices/s, p50 %.1f ms, p99 %.1f ms, %.0f us/device, ledger queue %.2f ms + batch %.2f ms, %d errors, ledger ok %v\n",
						i+1, res.DevicesPerSecond, res.P50ms, res.P99ms, res.ServerCPUusPerDevice, res.LedgerQueueMs, res.LedgerBatchMs, res.Errors, res.LedgerOK)
				}
				fmt.Fprintf(w, "%d runs: p99 worst %.1f ms, median %.1f ms; %d devices, %d errors, ledger ok %v\n",
					len(r.Runs), r.Total.P99ms, r.P99msMedian, r.Total.Devices, r.Total.Errors, r.Total.LedgerOK)
				return nil
			}
			res, err := bench.Provision(ctx, o)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), res)
			}
			if res.Replicas > 1 {
				fmt.Fprintf(cmd.OutOrStdout(), "%d replicas, ", res.Replicas)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s, %d stations: %d devices in %.1fs = %.0f devices/s, p50 %.1f ms, p99 %.1f ms, %d errors\n",
				res.DB, res.Stations, res.Devices, res.DurationSeconds, res.DevicesPerSecond, res.P50ms, res.P99ms, res.Errors)
			fmt.Fprintf(cmd.OutOrStdout(), "server CPU %.0f us/device; raw HSM P-256 signs %.0f/s (same token, same run); ledger ok %v; CPU stolen by the hypervisor %.1f%%\n",
				res.ServerCPUusPerDevice, res.RawHSMSignPerSecond, res.LedgerOK, 100*res.CPUStealShare)
			fmt.Fprintf(cmd.OutOrStdout(), "where a request waits (means): ledger queue %.2f ms and batch %.2f ms (%.1f writes each) for its reservation and again for its binding, HSM signature %.2f ms\n",
				res.LedgerQueueMs, res.LedgerBatchMs, res.LedgerBatchMembers, res.HSMSignMs)
			if res.DBCPUusPerDevice > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "PostgreSQL per device: backends %.0f us and the server's writers %.0f us of CPU, WAL %.1f KiB with %.2f full-page images, %.1f blocks read into shared buffers and %.0f found there, %.2f buffers a backend wrote to make room; %d checkpoints in the run\n",
					res.DBCPUusPerDevice, res.DBAuxCPUusPerDevice, res.DBWALKiBPerDevice, res.DBWALFPIPerDevice, res.DBBlocksReadPerDevice, res.DBBlocksHitPerDevice, res.DBBuffersBackendPerDevice, res.DBCheckpoints)
			}
			if res.Prefill > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "prefilled with %d devices in %.0fs (%.0f devices/s, ledger %.1f MiB): %.0f devices/s against %.0f on an empty ledger (means of %d rounds), ratio %.3f; audit log verified %v\n",
					res.Prefill, res.PrefillSeconds, res.PrefillPerSecond, float64(res.LedgerBytes)/(1<<20), res.PrefilledPerSecond, res.EmptyPerSecond, len(res.PrefillRounds), res.PrefilledRatio, *res.AuditOK)
				for i, r := range res.PrefillRounds {
					fmt.Fprintf(cmd.OutOrStdout(), "  round %d: %.0f devices/s prefilled (%.0f us/device), %.0f empty (%.0f us/device), ratio %.3f\n",
						i+1, r.PrefilledPerSecond, r.PrefilledCPUus, r.EmptyPerSecond, r.EmptyCPUus, r.Ratio)
				}
			}
			return nil
		},
	}
	f := c.Flags()
	f.IntVar(&o.Stations, "stations", 64, "concurrent stations")
	f.DurationVar(&o.Duration, "duration", 10*time.Second, "measured duration")
	f.StringVar(&driver, "db", "sqlite", "sqlite or postgres")
	f.Float64Var(&o.OfferedRate, "rate", 0, "offered devices/s over all stations (0: closed loop)")
	f.StringVar(&o.Dir, "dir", "", "working directory, replaced (default var/bench-provision)")
	f.StringVar(&o.CPUProfile, "cpuprofile", "", "have the server write a CPU profile of the run to this file")
	f.StringVar(&o.MemProfile, "memprofile", "", "have the server write an allocation profile (pprof allocs: every allocation since start, sampled) to this file when it stops")
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	f.BoolVar(&compareAudit, "compare-audit", false, "run without and then with the audit log and report its cost")
	f.BoolVar(&o.NoAudit, "no-audit", false, "run without the audit log")
	f.IntVar(&o.Prefill, "prefill", 0, "fill a new ledger with this many provisioned devices (bulk load), then measure it and an empty ledger in the same run")
	f.BoolVar(&o.Remeasure, "remeasure", false, "with --prefill: measure the prefilled ledger an earlier --prefill run left in --dir again (and a new empty one) instead of filling (PostgreSQL: one kept with --keep)")
	f.BoolVar(&o.Keep, "keep", false, "with --prefill --db postgres: keep the prefilled database for --remeasure (its DSN is printed as kept_dsn; drop it with dropdb when done)")
	f.IntVar(&o.Replicas, "replicas", 1, "tacline serve processes sharing the ledger, the stations spread over them (--db postgres)")
	f.IntVar(&o.ServerProcs, "server-gomaxprocs", 0, "GOMAXPROCS of each tacline serve process (0: Go's default, the machine's cores); replicas sharing a host can each be given their share")
	f.IntVar(&runs, "runs", 1, "repeat the run this many times, each on a fresh environment, and report each and the worst p99 (issue 14 judges p99 at --rate 500 over 5 runs)")
	f.IntVar(&rounds, "rounds", 2, "with --compare-audit or --prefill: alternating pairs of runs (--prefill: of the empty and the prefilled ledger; the ratio compares their means)")
	return c
}

func newBenchHSMCmd() *cobra.Command {
	var o bench.HSMOptions
	var asJSON bool
	c := &cobra.Command{
		Use:   "hsm",
		Short: "Raw HSM P-256 signatures against full issuances (build, lint, HSM sign, verify), same workers, same run",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Issuance runs in `tacline serve`, so it is measured under the
			// server's garbage-collector setting (server.gc_percent).
			var srv api.Config
			if path, _ := cmd.Flags().GetString("config"); cmd.Flags().Changed("config") {
				cfg, err := loadConfig(cmd)
				if err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
				o.Config, srv = &cfg.HSM, cfg.Server
			}
			gcPercent, _ := srv.TuneRuntime()
			if isTerminal(os.Stderr) {
				o.Progress = os.Stderr
			}
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			res, err := bench.HSM(ctx, o)
			if err != nil {
				return err
			}
			res.GCPercent = gcPercent
			if asJSON {
				return printJSON(cmd.OutOrStdout(), res)
			}
			for _, w := range []int{1, 2, 4} {
				fmt.Fprintf(cmd.OutOrStdout(), "%d workers: raw sign %.0f/s, issuance %.0f/s\n", w, res.RawSignPerSecond[w], res.IssuancePerSecond[w])
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ratio issuance/raw at %d workers: %.3f (CPU per raw sign / CPU per issuance: %.0f/%.0f us = %.3f; load average %s)\n",
				res.BestWorkers, res.Ratio, res.RawCPUMicrosPerSign[res.BestWorkers], res.IssuanceCPUMicrosPerIssue[res.BestWorkers], res.CPURatio, res.LoadAverage)
			return nil
		},
	}
	c.Flags().DurationVar(&o.Duration, "duration", 3*time.Second, "duration of each measurement")
	c.Flags().IntVar(&o.Rounds, "rounds", 2, "alternating raw/issuance rounds per worker count (rates are the mean)")
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return c
}

// serverBench checks --db and finds this binary (the benchmarks run it as
// the server process); an empty *dir becomes var/<name>.
func serverBench(driver string, dir *string, name string) (store.Dialect, string, error) {
	d := store.Dialect(driver)
	if d != store.SQLite && d != store.Postgres {
		return "", "", fmt.Errorf("--db must be sqlite or postgres")
	}
	bin, err := os.Executable()
	if err != nil {
		return "", "", err
	}
	if *dir == "" {
		*dir = filepath.Join("var", name)
	}
	return d, bin, nil
}
