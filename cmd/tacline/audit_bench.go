package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/tacline/tacline/bench/auditbench"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/pgadmin"
)

func init() { benchCommands = append(benchCommands, newBenchAuditCmd) }

func newBenchAuditCmd() *cobra.Command {
	var o auditbench.BenchOptions
	var driver, dir string
	var asJSON bool
	c := &cobra.Command{
		Use:   "audit --events N [--json]",
		Short: "Audit log: append rate, export and offline verify time for N events (throwaway database)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			d, err := os.MkdirTemp(dir, "bench-audit-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(d)
			o.Dir = d
			cfg := store.Config{Driver: store.Dialect(driver), DSN: filepath.Join(d, "ledger.db")}
			switch cfg.Driver {
			case store.SQLite:
			case store.Postgres:
				dsn, drop, err := pgadmin.CreateDatabase(ctx, defaultAdminDSN())
				if err != nil {
					return err
				}
				defer drop()
				cfg.DSN = dsn
			default:
				return errorf("--db must be sqlite or postgres")
			}
			db, err := store.Open(ctx, cfg)
			if err != nil {
				return err
			}
			defer db.Close()
			if !asJSON {
				fmt.Fprintf(cmd.ErrOrStderr(), "bench audit: %s, %d events...\n", driver, o.Events)
			}
			res, err := auditbench.Bench(ctx, db, o)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d events; fill %.0f events/s (batches of %d); one-row transactions %.0f/s with the event vs %.0f/s without (%.1f%% slower); checkpoint %.3fs; export %.1fs (%d bytes); verify %.1fs; export+verify %.1fs; valid %v\n",
				res.DB, res.Events, res.FillPerSecond, res.Batch, res.SinglePerSecond, res.BaselinePerSecond, res.OverheadPercent, res.CheckpointSeconds, res.ExportSeconds, res.ExportBytes, res.VerifySeconds, res.ExportVerifySecond, res.Valid)
			return nil
		},
	}
	f := c.Flags()
	f.IntVar(&o.Events, "events", 100000, "events in the log")
	f.IntVar(&o.Batch, "batch", 1000, "events per transaction while filling")
	f.IntVar(&o.Single, "single", 2000, "events appended one per transaction (and empty transactions for the baseline)")
	f.StringVar(&driver, "db", "sqlite", "sqlite or postgres")
	f.StringVar(&dir, "dir", "var", "directory for the throwaway SQLite ledger and the export file")
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	return c
}
