package main

import (
	"fmt"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/tacline/tacline/bench"
)

func init() { benchCommands = append(benchCommands, newBenchSoakCmd) }

func newBenchSoakCmd() *cobra.Command {
	var o bench.SoakOptions
	var driver string
	var asJSON bool
	c := &cobra.Command{
		Use:   "soak",
		Short: "Provision at a steady rate for a long time; sample RSS, goroutines, open files, ledger size per device and p99 every interval and report their slopes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.Driver, o.Bin, err = serverBench(driver, &o.Dir, "bench-soak"); err != nil {
				return err
			}
			o.AdminDSN = defaultAdminDSN()
			o.Log = cmd.ErrOrStderr()
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			res, err := bench.Soak(ctx, o)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), res)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%s, %d stations, %.0f devices/s offered for %s: %d devices, %d errors, ledger ok %v\n",
				res.DB, res.Stations, res.OfferedRate, res.Duration, res.Devices, res.Errors, res.LedgerOK)
			names := make([]string, 0, len(res.Slopes))
			for n := range res.Slopes {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				fmt.Fprintf(w, "  %-20s slope %+.3f/h, drift over the run %+.1f%%; second half %+.3f/h, %+.1f%%\n",
					n, res.Slopes[n], 100*res.Drift[n], res.SecondHalfSlopes[n], 100*res.SecondHalfDrift[n])
			}
			return nil
		},
	}
	f := c.Flags()
	f.DurationVar(&o.Duration, "duration", 30*time.Minute, "length of the run")
	f.DurationVar(&o.Interval, "interval", time.Minute, "one sample per interval")
	f.Float64Var(&o.Rate, "rate", 100, "offered devices/s over all stations")
	f.IntVar(&o.Stations, "stations", 16, "concurrent stations")
	f.StringVar(&driver, "db", "sqlite", "sqlite or postgres")
	f.StringVar(&o.Dir, "dir", "", "working directory, replaced (default var/bench-soak)")
	f.BoolVar(&asJSON, "json", false, "print one JSON object (the samples and slopes)")
	return c
}
