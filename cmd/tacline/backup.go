package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/tacline/tacline/backup"
)

func init() {
	register(newBackupCmd)
	register(newRestoreCmd)
}

func newBackupCmd() *cobra.Command {
	var to string
	var asJSON bool
	c := &cobra.Command{
		Use:   "backup --to DIR",
		Short: "Write a consistent backup set of the ledger (while servers provision) with the newest signed audit checkpoint and a manifest of hashes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" {
				return errorf("--to DIR is required: a new directory for the backup set")
			}
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			m, err := backup.Create(cmd.Context(), cfg, to, versionString())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), m)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "backup set %s: %s\n", to, m)
			return nil
		},
	}
	c.Flags().StringVar(&to, "to", "", "directory for the backup set (new or empty)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the manifest as JSON")
	return c
}

func newRestoreCmd() *cobra.Command {
	var o backup.RestoreOptions
	var checkpoints []string
	var logKey string
	var asJSON bool
	c := &cobra.Command{
		Use:   "restore --from DIR",
		Short: "Verify a backup set and restore it into the --config file's (empty) database; refuses a ledger older than a known audit checkpoint",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.From == "" {
				return errorf("--from DIR is required: the backup set's directory")
			}
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			for _, f := range checkpoints {
				b, err := os.ReadFile(f)
				if err != nil {
					return errorf("--checkpoint: %v", err)
				}
				o.Checkpoints = append(o.Checkpoints, b)
			}
			if logKey != "" {
				if o.LogKey, err = readLogKey(logKey); err != nil {
					return err
				}
			}
			rep, err := backup.Restore(cmd.Context(), cfg, o)
			if asJSON && rep != nil {
				if perr := printJSON(cmd.OutOrStdout(), rep); perr != nil {
					return perr
				}
			}
			if err != nil {
				return err
			}
			if !asJSON {
				w := cmd.OutOrStdout()
				fmt.Fprintf(w, "restored %s into %s: ledger check ok (%d pools, %d IMEIs), audit log %d events\n", rep.Manifest, rep.Target, rep.Pools, rep.IMEIs, rep.AuditSize)
				for _, c := range rep.Checks {
					fmt.Fprintf(w, "  %s (size %d): %s\n", c.Source, c.Size, c.Detail)
				}
				if rep.Rollback {
					fmt.Fprintln(w, "ROLLBACK: this ledger is older than a signed checkpoint; tacline serve refuses to start until `tacline restore ack --reason TEXT`")
				}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&o.From, "from", "", "the backup set's directory")
	f.StringArrayVar(&checkpoints, "checkpoint", nil, "a signed audit checkpoint known to be published (from an auditor or the register); repeatable")
	f.StringVar(&logKey, "log-key", "", "the audit log's verifier key, or @FILE (default: the set's log.pub)")
	f.BoolVar(&o.AllowRollback, "allow-rollback", false, "restore even a ledger older than a known checkpoint (the server then refuses to start until `restore ack`)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	var reason string
	ack := &cobra.Command{
		Use:   "ack --reason TEXT",
		Short: "Acknowledge serving a ledger older than the published audit checkpoint (audited); read docs/operations.md first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			db, err := openLedger(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer db.Close()
			aside, err := backup.Acknowledge(cmd.Context(), db, cfg, reason, operator())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "acknowledged (audited as ledger.rollback_acknowledged); the published checkpoint was moved to %s\n", aside)
			return nil
		},
	}
	ack.Flags().StringVar(&reason, "reason", "", "why this ledger may be served, and what was done about IMEIs issued after the backup (required)")
	c.AddCommand(ack, newRestoreVerifyCmd())
	return c
}

func newRestoreVerifyCmd() *cobra.Command {
	var o backup.RestoreOptions
	var checkpoints []string
	var logKey string
	var asJSON bool
	c := &cobra.Command{
		Use:   "verify",
		Short: "Prove the ledger already in the --config database (e.g. a PostgreSQL point-in-time recovery): ledger check and the audit log against every known checkpoint",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			for _, f := range checkpoints {
				b, err := os.ReadFile(f)
				if err != nil {
					return errorf("--checkpoint: %v", err)
				}
				o.Checkpoints = append(o.Checkpoints, b)
			}
			if logKey != "" {
				if o.LogKey, err = readLogKey(logKey); err != nil {
					return err
				}
			}
			rep, err := backup.Verify(cmd.Context(), cfg, o)
			if asJSON && rep != nil {
				if perr := printJSON(cmd.OutOrStdout(), rep); perr != nil {
					return perr
				}
			}
			if err != nil {
				return err
			}
			if !asJSON {
				w := cmd.OutOrStdout()
				fmt.Fprintf(w, "ledger check ok (%d pools, %d IMEIs), audit log %d events\n", rep.Pools, rep.IMEIs, rep.AuditSize)
				for _, c := range rep.Checks {
					fmt.Fprintf(w, "  %s (size %d): %s\n", c.Source, c.Size, c.Detail)
				}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringArrayVar(&checkpoints, "checkpoint", nil, "a signed audit checkpoint known to be published; repeatable")
	f.StringVar(&logKey, "log-key", "", "the audit log's verifier key, or @FILE (needed when any checkpoint is known)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	return c
}
