package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/tacline/tacline/bench/allocbench"
	"github.com/tacline/tacline/store"
)

func init() { register(newBenchCmd) }

// benchCommands lets other files add `tacline bench X` subcommands.
var benchCommands []func() *cobra.Command

func newBenchCmd() *cobra.Command {
	c := &cobra.Command{Use: "bench", Short: "Benchmarks: allocate, hsm, provision, audit, reconcile, verify"}
	c.AddCommand(newBenchAllocateCmd())
	for _, f := range benchCommands {
		c.AddCommand(f())
	}
	return c
}

func defaultAdminDSN() string {
	if v := os.Getenv("TACLINE_TEST_PG_DSN"); v != "" {
		return v
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

func newBenchAllocateCmd() *cobra.Command {
	var o allocbench.Options
	var driver string
	var asJSON bool
	c := &cobra.Command{
		Use:   "allocate",
		Short: "Durable reservations per second against a single-row-insert baseline on the same database",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Driver = store.Dialect(driver)
			if o.Driver != store.SQLite && o.Driver != store.Postgres {
				return fmt.Errorf("--db must be sqlite or postgres")
			}
			o.AdminDSN = defaultAdminDSN()
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			if !asJSON {
				fmt.Fprintf(cmd.ErrOrStderr(), "bench allocate: %s, %d workers, %s baseline then %s allocation...\n", driver, o.Workers, o.Duration, o.Duration)
			}
			res, err := allocbench.Run(ctx, o)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d reservations in %.1fs = %.0f/s (p50 %.2f ms, p99 %.2f ms), duplicates %d, ledger ok %v\n",
				res.DB, res.Reservations, res.DurationSeconds, res.PerSecond, res.P50ms, res.P99ms, res.Duplicates, res.LedgerOK)
			fmt.Fprintf(cmd.OutOrStdout(), "baseline single-row commits: %.0f/s; ratio %.2f\n", res.BaselineCommitsPerSecond, res.Ratio)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&driver, "db", "sqlite", "sqlite or postgres")
	f.StringVar(&o.DSN, "dsn", "", "database (default: a throwaway one; PostgreSQL through $TACLINE_TEST_PG_DSN or 127.0.0.1:5432)")
	f.IntVar(&o.Workers, "workers", 64, "concurrent callers")
	f.DurationVar(&o.Duration, "duration", 5*time.Second, "length of each phase")
	f.IntVar(&o.PerDevice, "imeis", 1, "IMEIs per reservation")
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	return c
}
