package main

import (
	"bytes"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/catalog"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/internal/progress"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

func init() {
	register(newMigrateCmd)
	register(newTACCmd)
	register(newPoolCmd)
	register(newLedgerCmd)
}

func newMigrateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Apply pending ledger database migrations (also done at start-up)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := ledgerFromFlags(cmd)
			if err != nil {
				return err
			}
			defer db.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "ledger schema up to date (%s)\n", db.Dialect())
			return nil
		},
	}
}

func newTACCmd() *cobra.Command {
	c := &cobra.Command{Use: "tac", Short: "The TAC catalogue: import, add, list, export"}
	c.AddCommand(&cobra.Command{
		Use:   "import FILE",
		Short: "Import a GSMA-style pipe-separated TAC file (all records or none)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			tacs, err := catalog.Parse(f)
			if err != nil {
				return err
			}
			db, err := ledgerFromFlags(cmd)
			if err != nil {
				return err
			}
			defer db.Close()
			if err := db.AddTACs(cmd.Context(), tacs, operator()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %d TACs from %s\n", len(tacs), args[0])
			return nil
		},
	})
	var t catalog.TAC
	var tacStr, alloc, radios string
	var approvals []string
	add := &cobra.Command{
		Use:   "add",
		Short: "Add one TAC to the catalogue",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if t.TAC, err = imei.ParseTAC(tacStr); err != nil {
				return fmt.Errorf("--tac: %w", err)
			}
			if t.AllocationDate, err = time.Parse("2006-01-02", alloc); err != nil {
				return fmt.Errorf("--allocation-date: want YYYY-MM-DD: %w", err)
			}
			if radios != "" {
				t.RadioInterfaces = strings.Split(radios, ",")
			}
			for _, a := range approvals {
				ap, err := parseApproval(a)
				if err != nil {
					return err
				}
				t.Approvals = append(t.Approvals, ap)
			}
			db, err := ledgerFromFlags(cmd)
			if err != nil {
				return err
			}
			defer db.Close()
			if err := db.AddTACs(cmd.Context(), []catalog.TAC{t}, operator()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added TAC %s (%s %s)\n", t.TACString(), t.Brand, t.ModelName)
			return nil
		},
	}
	fl := add.Flags()
	fl.StringVar(&tacStr, "tac", "", "the 8-digit TAC (required)")
	fl.StringVar(&t.Brand, "brand", "", "manufacturer / brand (required)")
	fl.StringVar(&t.ModelName, "model", "", "model name (required)")
	fl.StringVar(&t.ModelNumber, "model-number", "", "model number")
	fl.StringVar(&t.MarketingName, "marketing-name", "", "marketing name")
	fl.StringVar(&t.DeviceType, "device-type", "Smartphone", "device type")
	fl.StringVar(&radios, "radio", "LTE", "radio interfaces, comma separated")
	fl.IntVar(&t.IMEIsPerDevice, "imeis-per-device", 1, "IMEIs per device (SIM slots, 1-5)")
	fl.StringVar(&alloc, "allocation-date", time.Now().UTC().Format("2006-01-02"), "allocation date YYYY-MM-DD")
	fl.StringArrayVar(&approvals, "approval", nil, "market approval MARKET:REFERENCE:FROM[:UNTIL] (dates YYYY-MM-DD), repeatable")
	c.AddCommand(add)
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the TAC catalogue",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := ledgerFromFlags(cmd)
			if err != nil {
				return err
			}
			defer db.Close()
			tacs, err := db.TACs(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				for _, t := range tacs {
					printJSON(cmd.OutOrStdout(), tacJSON(t))
				}
				return nil
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "TAC\tBRAND\tMODEL\tTYPE\tIMEIS/DEVICE\tAPPROVALS")
			for _, t := range tacs {
				var apps []string
				for _, a := range t.Approvals {
					apps = append(apps, a.Market)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\n", t.TACString(), t.Brand, t.ModelName, t.DeviceType, t.IMEIsPerDevice, strings.Join(apps, ","))
			}
			return w.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")
	c.AddCommand(list)
	var out string
	export := &cobra.Command{
		Use:   "export [-o FILE]",
		Short: "Write the TAC catalogue as the pipe-separated file `tac import` reads (for regulators: `tacline verify --tacs`)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := ledgerFromFlags(cmd)
			if err != nil {
				return err
			}
			defer db.Close()
			tacs, err := db.TACs(cmd.Context())
			if err != nil {
				return err
			}
			if out == "" || out == "-" {
				return catalog.Write(cmd.OutOrStdout(), tacs)
			}
			var buf bytes.Buffer
			if err := catalog.Write(&buf, tacs); err != nil {
				return err
			}
			if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
				return flagErr("-o", "%v", err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %d TACs to %s\n", len(tacs), out)
			return nil
		},
	}
	export.Flags().StringVarP(&out, "output", "o", "", "file to write (default standard output)")
	c.AddCommand(export)
	return c
}

func parseApproval(s string) (catalog.Approval, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 3 || len(parts) > 4 {
		return catalog.Approval{}, fmt.Errorf("--approval %q: want MARKET:REFERENCE:FROM[:UNTIL]", s)
	}
	a := catalog.Approval{Market: parts[0], Reference: parts[1]}
	var err error
	if a.ValidFrom, err = time.Parse("2006-01-02", parts[2]); err != nil {
		return a, fmt.Errorf("--approval %q: FROM must be YYYY-MM-DD", s)
	}
	if len(parts) == 4 && parts[3] != "" {
		if a.ValidUntil, err = time.Parse("2006-01-02", parts[3]); err != nil {
			return a, fmt.Errorf("--approval %q: UNTIL must be YYYY-MM-DD", s)
		}
	}
	return a, nil
}

func tacJSON(t catalog.TAC) map[string]any {
	var apps []map[string]string
	for _, a := range t.Approvals {
		m := map[string]string{"market": a.Market, "reference": a.Reference, "valid_from": a.ValidFrom.Format("2006-01-02")}
		if !a.ValidUntil.IsZero() {
			m["valid_until"] = a.ValidUntil.Format("2006-01-02")
		}
		apps = append(apps, m)
	}
	return map[string]any{"tac": t.TACString(), "brand": t.Brand, "model_name": t.ModelName, "model_number": t.ModelNumber,
		"marketing_name": t.MarketingName, "device_type": t.DeviceType, "radio_interfaces": t.RadioInterfaces,
		"imeis_per_device": t.IMEIsPerDevice, "allocation_date": t.AllocationDate.Format("2006-01-02"), "approvals": apps}
}

func newPoolCmd() *cobra.Command {
	c := &cobra.Command{Use: "pool", Short: "SNR pools: create, list"}
	var p store.Pool
	var tacStr, start, end string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a pool: an SNR range of one TAC for a factory, line and product",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if p.TAC, err = imei.ParseTAC(tacStr); err != nil {
				return fmt.Errorf("--tac: %w", err)
			}
			s, err1 := strconv.ParseUint(start, 10, 32)
			e, err2 := strconv.ParseUint(end, 10, 32)
			if err1 != nil || err2 != nil {
				return fmt.Errorf("--snr-start and --snr-end must be numbers 0-999999")
			}
			p.SNRStart, p.SNREnd = uint32(s), uint32(e)
			db, err := ledgerFromFlags(cmd)
			if err != nil {
				return err
			}
			defer db.Close()
			got, err := db.CreatePool(cmd.Context(), p, operator())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created pool %s: TAC %s SNR %06d-%06d (%d IMEIs)\n", got.Name, imei.FormatTAC(got.TAC),
				got.SNRStart, got.SNREnd, got.SNREnd-got.SNRStart+1)
			return nil
		},
	}
	fl := create.Flags()
	fl.StringVar(&p.Name, "name", "", "pool name (required)")
	fl.StringVar(&tacStr, "tac", "", "the TAC (required)")
	fl.StringVar(&start, "snr-start", "0", "first SNR")
	fl.StringVar(&end, "snr-end", "999999", "last SNR (inclusive)")
	fl.StringVar(&p.Factory, "factory", "", "factory")
	fl.StringVar(&p.Line, "line", "", "production line")
	fl.StringVar(&p.Product, "product", "", "product the pool serves")
	fl.StringVar(&p.Market, "market", "", "target market (ISO 3166 code or region) whose approval the TAC needs")
	c.AddCommand(create)
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List pools with used, voided and free counts and the high-water mark",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := ledgerFromFlags(cmd)
			if err != nil {
				return err
			}
			defer db.Close()
			ps, err := db.Pools(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				for _, p := range ps {
					printJSON(cmd.OutOrStdout(), map[string]any{"name": p.Name, "tac": imei.FormatTAC(p.TAC),
						"snr_start": p.SNRStart, "snr_end": p.SNREnd, "high_water_mark": p.NextSNR, "factory": p.Factory,
						"line": p.Line, "product": p.Product, "market": p.Market, "reserved": p.Reserved, "bound": p.Bound,
						"voided": p.Voided, "revoked": p.Revoked, "free": p.Free})
				}
				return nil
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "POOL\tTAC\tSNR RANGE\tFACTORY/LINE\tPRODUCT\tMARKET\tRESERVED\tBOUND\tVOIDED\tREVOKED\tFREE\tHIGH-WATER")
			for _, p := range ps {
				fmt.Fprintf(w, "%s\t%s\t%06d-%06d\t%s/%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%06d\n", p.Name, imei.FormatTAC(p.TAC),
					p.SNRStart, p.SNREnd, p.Factory, p.Line, p.Product, p.Market, p.Reserved, p.Bound, p.Voided, p.Revoked, p.Free, p.NextSNR)
			}
			return w.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")
	c.AddCommand(list)
	return c
}

func newLedgerCmd() *cobra.Command {
	c := &cobra.Command{Use: "ledger", Short: "The allocation ledger"}
	var asJSON bool
	check := &cobra.Command{
		Use:   "check",
		Short: "Verify the ledger invariants; exit status 1 with the first violation",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, db, err := configAndLedger(cmd)
			if err != nil {
				return err
			}
			defer db.Close()
			rep, err := db.Check(cmd.Context())
			if err != nil {
				return err
			}
			// The stations, role certificates and issuers against the
			// audit log's identity events, where there is a log (audit.disabled
			// is for benchmarks: their events are in none).
			var ids *audit.IdentityReport
			if !cfg.Audit.Disabled {
				r, err := audit.CheckIdentities(cmd.Context(), db)
				if err != nil {
					return err
				}
				ids = &r
				rep.Violations = append(rep.Violations, r.Violations...)
			}
			if rep.Violations == nil {
				rep.Violations = []string{}
			}
			if asJSON {
				out := map[string]any{"ok": rep.OK(), "pools": rep.Pools, "imeis": rep.IMEIs, "leases": rep.Leases,
					"leased_unused": rep.LeasedUnused, "released_unleased": rep.ReleasedUnleased, "violations": rep.Violations}
				if ids != nil {
					out["identities"] = map[string]int{"events": ids.Events, "stations": ids.Stations, "people": ids.People, "issuers": ids.Issuers}
				}
				printJSON(cmd.OutOrStdout(), out)
			} else if rep.OK() {
				fmt.Fprintf(cmd.OutOrStdout(), "ledger OK: %d pools, %d IMEIs, every SNR below each high-water mark accounted for once\n", rep.Pools, rep.IMEIs)
				if rep.Leases > 0 {
					fmt.Fprintf(cmd.OutOrStdout(), "%d leases to sites, %d leased SNRs not yet used, %d released SNRs not yet leased again\n", rep.Leases, rep.LeasedUnused, rep.ReleasedUnleased)
				}
				if ids != nil {
					fmt.Fprintf(cmd.OutOrStdout(), "%d stations, %d role certificates and %d issuers as the audit log's %d identity events describe them\n", ids.Stations, ids.People, ids.Issuers, ids.Events)
				}
			} else {
				for _, v := range rep.Violations {
					fmt.Fprintln(cmd.OutOrStdout(), "violation:", v)
				}
			}
			if !rep.OK() {
				return exitError{code: 1}
			}
			return nil
		},
	}
	check.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	c.AddCommand(check)
	c.AddCommand(newLedgerRebuildCmd())
	return c
}

// rebuildProgress shows a rebuild's phases on out: a line as each begins,
// then the copy's pages done, rate and ETA, and the check's time so far.
func rebuildProgress(out *progress.Printer) func(store.RebuildProgress) {
	var phase store.RebuildPhase
	var copied string // the copy's last line, kept when the copy ends
	return func(p store.RebuildProgress) {
		if p.Phase != phase {
			if copied != "" {
				out.Print(copied)
				copied = ""
			}
			switch p.Phase {
			case store.RebuildVerify:
				out.Print("rebuild: checking the ledger's file (PRAGMA integrity_check)")
			case store.RebuildCopy:
				out.Print(copyStart("rebuild", p.CopyProgress))
			case store.RebuildSync:
				out.Print("rebuild: copy written; syncing it to disk")
			case store.RebuildCheck:
				out.Print("rebuild: checking the new file (ledger check)")
			case store.RebuildSwap:
				out.Print("rebuild: check passed; putting the new file in place")
			}
			phase = p.Phase
			return
		}
		switch p.Phase {
		case store.RebuildCopy:
			copied = copyLine("rebuild", p.CopyProgress)
			out.Update(copied)
		case store.RebuildCheck:
			out.Update(fmt.Sprintf("rebuild: checking, %s elapsed", p.Elapsed.Truncate(time.Second)))
		}
	}
}

// copyStart is the line that says a copy of the SQLite ledger (by a
// rebuild or a backup: task) begins.
func copyStart(task string, p store.CopyProgress) string {
	return fmt.Sprintf("%s: copying the ledger into %s, about %d MiB of %d-byte pages", task, p.File, p.TotalBytes>>20, p.PageSize)
}

// copyLine is the progress line of a copy of the SQLite ledger: pages
// copied, rate and ETA.
func copyLine(task string, p store.CopyProgress) string {
	c := progress.Counter{Task: task, Unit: "pages", Total: p.TotalBytes / p.PageSize,
		Also: progress.Rate{Unit: "MiB", Per: float64(p.PageSize) / (1 << 20)}}
	return c.Line(p.Bytes/p.PageSize, p.Elapsed)
}

func newLedgerRebuildCmd() *cobra.Command {
	var asJSON bool
	var pageSize int64
	c := &cobra.Command{
		Use:   "rebuild --page-size 1024",
		Short: "Rewrite a SQLite ledger with another page size, offline (tacline stopped), check it, then swap it in",
		Long: `Check the SQLite ledger's file (PRAGMA integrity_check: a damaged ledger is
refused, nothing written; restore a backup), rewrite it with pages of
--page-size bytes into a new file next to it (ledger.db-rebuild, SQLite's
VACUUM INTO), run the ledger check on the new file, and only then rename it
over the ledger; a refused copy is followed by the ledger check of the
ledger itself, to say which side failed. A ledger created
before migration 0014 has 4 KiB pages; 1 KiB pages write fewer bytes per
device (docs/operations.md, "Upgrading").

Offline: a ledger that a server or another command has open is refused,
and a server started during the rebuild cannot open the ledger until it is
done. Space: it needs free space for one more copy of the ledger in the
ledger's directory (the pages in use, more when the pages get smaller);
it measures that first and refuses with insufficient_space, writing
nothing, when the filesystem has less. The ledger stays as it was until
the checked copy replaces it: Ctrl-C, a failure or a refused check removes
the new file; a killed rebuild leaves ledger.db-rebuild, which the next
rebuild removes. Progress (percent, rate, ETA) goes to standard error: in
place on a terminal, a line every 10 s otherwise. PostgreSQL ledgers are
refused.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			// Ctrl-C or SIGTERM stops the copy or the check and removes the
			// new file; a second one ends the process at once.
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() { <-ctx.Done(); stop() }()
			out := progress.NewPrinter(os.Stderr, isTerminal(os.Stderr), 10*time.Second)
			rep, err := store.RebuildSQLite(ctx, cfg.Database, pageSize, rebuildProgress(out))
			out.End()
			if err != nil && !tacerr.Is(err, tacerr.LedgerInvariant) {
				return err
			}
			if asJSON {
				if rep.Check.Violations == nil {
					rep.Check.Violations = []string{}
				}
				doc := map[string]any{"ok": err == nil, "path": rep.Path, "replaced": rep.Replaced,
					"page_size_before": rep.PageSizeBefore, "page_size": rep.PageSize, "bytes_before": rep.BytesBefore, "bytes": rep.Bytes,
					"need_bytes": rep.NeedBytes, "free_bytes": rep.FreeBytes, "stale_bytes": rep.StaleBytes,
					"seconds": rep.Took.Seconds(), "check": rep.Check}
				if rep.Failed != "" {
					doc["failed"], doc["error"] = rep.Failed, err.Error()
				}
				if rep.Integrity != nil {
					doc["integrity"] = rep.Integrity
				}
				if rep.SourceCheck != nil {
					doc["source_check"] = rep.SourceCheck
				}
				printJSON(cmd.OutOrStdout(), doc)
			} else if err == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "ledger %s rebuilt in %s: %d-byte pages (were %d), %d bytes (were %d)\n", rep.Path,
					rep.Took.Round(time.Millisecond), rep.PageSize, rep.PageSizeBefore, rep.Bytes, rep.BytesBefore)
				fmt.Fprintf(cmd.OutOrStdout(), "ledger OK: %d pools, %d IMEIs\n", rep.Check.Pools, rep.Check.IMEIs)
			} else {
				w := cmd.OutOrStdout()
				violations := rep.Check.Violations
				switch {
				case rep.Integrity != nil:
					fmt.Fprintf(w, "ledger %s NOT rebuilt: the ledger itself is damaged (PRAGMA integrity_check); nothing was written. Restore the last good backup (tacline restore), then rebuild\n", rep.Path)
					violations = rep.Integrity
				case rep.Failed == store.RebuildFailedLedger:
					fmt.Fprintf(w, "ledger %s NOT replaced: the ledger itself fails the ledger check (its rebuilt copy too); it is as it was. Find the cause (tacline ledger check) and restore the last good backup\n", rep.Path)
					violations = rep.SourceCheck.Violations
				default:
					fmt.Fprintf(w, "ledger %s NOT replaced: the rebuilt copy fails the ledger check while the ledger passes it; the ledger is as it was\n", rep.Path)
				}
				for _, v := range violations {
					fmt.Fprintln(w, "violation:", v)
				}
			}
			if err != nil {
				return exitError{code: 1}
			}
			return nil
		},
	}
	c.Flags().Int64Var(&pageSize, "page-size", 1024, "page size in bytes: a power of two from 512 to 65536")
	c.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return c
}
