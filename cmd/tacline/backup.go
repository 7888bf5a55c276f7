package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/tacline/tacline/backup"
	"github.com/tacline/tacline/internal/progress"
	"github.com/tacline/tacline/store"
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
		Long: `Write a backup set into --to DIR (new or empty) while servers provision:
the ledger copy, the newest signed audit checkpoint, the log key, the
published checkpoint and manifest.json (docs/operations.md, "Backup and
restore").

Space: a SQLite ledger's copy is about its pages in use; the backup
measures them first and refuses with insufficient_space, writing nothing,
when DIR's filesystem has less free than that plus 2 % (at least 64 MiB).
A PostgreSQL ledger's dump (pg_dump, compressed) is not measured. A disk
that fills during the copy is insufficient_space too; a failed backup
leaves DIR as it found it (absent or empty). Progress of a SQLite copy
(percent, rate, ETA) goes to standard error: in place on a terminal, a
line every 10 s otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" {
				return errorf("--to DIR is required: a new directory for the backup set")
			}
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			out := progress.NewPrinter(os.Stderr, isTerminal(os.Stderr), 10*time.Second)
			m, err := backup.Create(cmd.Context(), cfg, to, versionString(), backupProgress(out))
			out.End()
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

// backupProgress shows a SQLite backup's copy on out: a line as it
// begins, then the pages copied, rate and ETA, and the last of them as a
// line of its own when it ends.
func backupProgress(out *progress.Printer) func(store.CopyProgress) {
	begun := false
	return func(p store.CopyProgress) {
		switch {
		case !begun:
			begun = true
			out.Print(copyStart("backup", p))
		case p.Bytes == p.TotalBytes:
			out.Print(copyLine("backup", p))
		default:
			out.Update(copyLine("backup", p))
		}
	}
}

// knownFlags are the checkpoints and log key that restore and restore
// verify prove a ledger against.
type knownFlags struct {
	checkpoints []string
	logKey      string
	asJSON      bool
}

func (k *knownFlags) add(c *cobra.Command) {
	f := c.Flags()
	f.StringArrayVar(&k.checkpoints, "checkpoint", nil, "a signed audit checkpoint known to be published (from an auditor or the register); repeatable")
	f.StringVar(&k.logKey, "log-key", "", "the audit log's verifier key, or @FILE (restore: default the set's log.pub)")
	f.BoolVar(&k.asJSON, "json", false, "print the report as JSON")
}

func (k *knownFlags) fill(o *backup.RestoreOptions) error {
	for _, f := range k.checkpoints {
		b, err := os.ReadFile(f)
		if err != nil {
			return errorf("--checkpoint: %v", err)
		}
		o.Checkpoints = append(o.Checkpoints, b)
	}
	if k.logKey != "" {
		v, err := readLogKey(k.logKey)
		if err != nil {
			return err
		}
		o.LogKey = v
	}
	return nil
}

// report prints a restore or verify report (JSON with --json, even when
// err is set), then returns err.
func (k *knownFlags) report(cmd *cobra.Command, rep *backup.Report, err error, head string) error {
	if k.asJSON && rep != nil {
		if perr := printJSON(cmd.OutOrStdout(), rep); perr != nil {
			return perr
		}
	}
	if err != nil || k.asJSON {
		return err
	}
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "%sledger check ok (%d pools, %d IMEIs), audit log %d events\n", head, rep.Pools, rep.IMEIs, rep.AuditSize)
	for _, c := range rep.Checks {
		fmt.Fprintf(w, "  %s (size %d): %s\n", c.Source, c.Size, c.Detail)
	}
	if rep.Rollback {
		fmt.Fprintln(w, "ROLLBACK: this ledger is older than a signed checkpoint; tacline serve refuses to start until `tacline restore ack --reason TEXT`")
	}
	return nil
}

func newRestoreCmd() *cobra.Command {
	var o backup.RestoreOptions
	var k knownFlags
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
			if err := k.fill(&o); err != nil {
				return err
			}
			rep, err := backup.Restore(cmd.Context(), cfg, o)
			head := ""
			if rep != nil && rep.Manifest != nil {
				head = fmt.Sprintf("restored %s into %s: ", rep.Manifest, rep.Target)
			}
			return k.report(cmd, rep, err, head)
		},
	}
	k.add(c)
	c.Flags().StringVar(&o.From, "from", "", "the backup set's directory")
	c.Flags().BoolVar(&o.AllowRollback, "allow-rollback", false, "restore even a ledger older than a known checkpoint (the server then refuses to start until restore ack; needs audit.published_checkpoint)")
	var reason, logKey string
	ack := &cobra.Command{
		Use:   "ack --reason TEXT",
		Short: "Acknowledge serving a ledger older than the published audit checkpoint (audited); read docs/operations.md first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, db, err := configAndLedger(cmd)
			if err != nil {
				return err
			}
			defer db.Close()
			key := ""
			if logKey != "" {
				if key, err = readLogKey(logKey); err != nil {
					return err
				}
			}
			aside, err := backup.Acknowledge(cmd.Context(), db, cfg, reason, operator(), key)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "acknowledged (audited as ledger.rollback_acknowledged); the published checkpoint was moved to %s\n", aside)
			return nil
		},
	}
	ack.Flags().StringVar(&reason, "reason", "", "why this ledger may be served, and what was done about IMEIs issued after the backup (required)")
	ack.Flags().StringVar(&logKey, "log-key", "", "the audit log's verifier key, or @FILE (default: the key of the ledger's newest checkpoint; needed when the ledger has none)")
	c.AddCommand(ack, newRestoreVerifyCmd())
	return c
}

func newRestoreVerifyCmd() *cobra.Command {
	var k knownFlags
	c := &cobra.Command{
		Use:   "verify",
		Short: "Prove the ledger already in the --config database (e.g. a PostgreSQL point-in-time recovery): ledger check and the audit log against every known checkpoint",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			var o backup.RestoreOptions
			if err := k.fill(&o); err != nil {
				return err
			}
			rep, err := backup.Verify(cmd.Context(), cfg, o)
			return k.report(cmd, rep, err, "")
		},
	}
	k.add(c)
	return c
}
