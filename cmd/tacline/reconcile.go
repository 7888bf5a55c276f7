package main

import (
	"fmt"
	"os"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/tacline/tacline/bench/reconcilebench"
	"github.com/tacline/tacline/register/reconcile"
	"github.com/tacline/tacline/store"
)

func init() {
	register(newReconcileCmd)
	benchCommands = append(benchCommands, newBenchReconcileCmd)
}

// dbFlags let the register commands name a ledger directly, instead of
// through --config.
type dbFlags struct{ driver, dsn string }

func (f *dbFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.driver, "db-driver", "", "ledger database driver (sqlite or postgres), instead of the --config file's")
	c.Flags().StringVar(&f.dsn, "dsn", "", "ledger database DSN, with --db-driver")
}

// open opens the ledger named by --db-driver/--dsn, or else by --config.
func (f *dbFlags) open(cmd *cobra.Command) (*store.DB, error) {
	if f.driver == "" && f.dsn == "" {
		return ledgerFromFlags(cmd)
	}
	return store.Open(cmd.Context(), store.Config{Driver: store.Dialect(f.driver), DSN: f.dsn})
}

func newReconcileCmd() *cobra.Command {
	var db dbFlags
	var regPath, format, out string
	var asJSON bool
	c := &cobra.Command{
		Use:   "reconcile --register FILE --out DIR [--format dirbs|lines] [--json]",
		Short: "Reconcile a national register file against the ledger (one CSV per category + summary.json)",
		Long: `Compare the register's records for the manufacturer's TACs with the ledger and
write to DIR: missing_in_register.csv (bound here, absent there),
unknown_to_manufacturer.csv (there under our TACs, never allocated here),
status_mismatch.csv (voided, revoked or only reserved here, registered there),
duplicates_in_register.csv (the same 14-digit IMEI more than once there, with
the device_id of each extra copy and the device serial it maps back to),
registered_to_other_device.csv (rows of an IMEI bound here that name another
device's id: a clone the register holds, perhaps instead of ours),
malformed.csv (lines that are not an IMEI, with line numbers) and
summary.json. Rows of other TACs are counted and ignored. The register file
is a DIRBS zip, a CSV with an approved_imei (or imei) header, or one IMEI per
line; a BOM and CRLF line ends are accepted, and a quoted CSV field may hold
a line break (the row is one, numbered by its first line).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := reconcile.ParseFormat(format)
			if err != nil {
				return err
			}
			if regPath == "" {
				return errorf("--register is required: the register's file")
			}
			in, err := reconcile.OpenInput(regPath)
			if err != nil {
				return err
			}
			defer in.Close()
			ledger, err := db.open(cmd)
			if err != nil {
				return err
			}
			defer ledger.Close()
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			opt := reconcile.Options{Format: f, OutDir: out}
			if isTerminal(os.Stderr) {
				bar := progressbar.DefaultBytes(in.Size, "reconciling")
				opt.Progress = func(n int64) { bar.Set64(n) }
				defer bar.Finish()
			}
			sum, err := reconcile.Run(ctx, reconcile.DBLedger{DB: ledger}, in, opt)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), sum)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "register rows %d, ledger IMEIs %d, TACs %d\n", sum.RegisterRows, sum.LedgerIMEIs, sum.TACs)
			fmt.Fprintf(w, "missing_in_register %d\nunknown_to_manufacturer %d\nstatus_mismatch %d\nduplicates_in_register %d\nregistered_to_other_device %d\nmalformed %d\nforeign_tac_rows %d (ignored)\nmatched %d\n",
				sum.MissingInRegister, sum.UnknownToManufacturer, sum.StatusMismatch, sum.DuplicatesInRegister, sum.RegisteredToOtherDevice, sum.Malformed, sum.ForeignTACRows, sum.Matched)
			fmt.Fprintf(w, "details in %s\n", out)
			return nil
		},
	}
	db.add(c)
	c.Flags().StringVar(&regPath, "register", "", "the register's file: DIRBS zip, CSV with header, or one IMEI per line")
	c.Flags().StringVar(&format, "format", "", "dirbs or lines (default: detect from the first line)")
	c.Flags().StringVar(&out, "out", "", "directory for the category files and summary.json")
	c.Flags().BoolVar(&asJSON, "json", false, "print the summary as JSON")
	return c
}

func newBenchReconcileCmd() *cobra.Command {
	var o reconcilebench.BenchOptions
	var asJSON, noBaseline bool
	c := &cobra.Command{
		Use:   "reconcile --lines N [--json]",
		Short: "Reconcile a synthetic register file of N lines against a synthetic ledger; time sort -u + comm on the same data",
		Long: `Generate a register file of N lines with known discrepancies of every
category and a synthetic ledger (in-memory bitsets fed to the reconciliation
engine through the same interface as the database ledger), reconcile them,
check the counts, and time the baseline LC_ALL=C sort -u + comm on the same
data. Prints lines per second, peak RSS (VmHWM) and the speed-up. Files go to
--dir (default: the system temporary directory) and are removed afterwards.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Baseline = !noBaseline
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			res, err := reconcilebench.Bench(ctx, o)
			if asJSON && res.Lines > 0 {
				if perr := printJSON(cmd.OutOrStdout(), res); perr != nil {
					return perr
				}
			} else if err == nil {
				fmt.Fprintln(cmd.OutOrStdout(), res)
			}
			return err
		},
	}
	c.Flags().Int64Var(&o.Lines, "lines", 10_000_000, "register lines to generate")
	c.Flags().StringVar(&o.Dir, "dir", "", "directory for the generated files")
	c.Flags().BoolVar(&noBaseline, "no-baseline", false, "skip the sort -u + comm baseline")
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return c
}
