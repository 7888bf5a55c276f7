package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/ca/castore"
	"github.com/tacline/tacline/config"
	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/internal/progress"
	"github.com/tacline/tacline/site"
	"github.com/tacline/tacline/store"
)

// Sites and leases at headquarters (docs/sites.md).

func init() {
	register(newLeaseCmd)
	register(newSiteCmd)
}

func newLeaseCmd() *cobra.Command {
	c := &cobra.Command{Use: "lease", Short: "Blocks of SNRs leased to factory sites: grant, list, return"}
	var siteName, pool string
	var size int64
	var ttl time.Duration
	grant := &cobra.Command{
		Use:   "grant",
		Short: "Lease a block of at most SIZE SNRs of a pool to a site (SNRs other sites released come first), within hq.lease",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, db, err := configAndLedger(cmd)
			if err != nil {
				return err
			}
			defer db.Close()
			if ttl == 0 {
				ttl = cfg.HQ.Lease.DefaultTTL
			}
			l, err := db.GrantLease(cmd.Context(), siteName, pool, size, ttl, cfg.HQ.Lease.Limits(), operator())
			if err != nil {
				return err
			}
			from := ""
			if l.ReletOf != 0 {
				from = fmt.Sprintf(" (SNRs released from lease %d)", l.ReletOf)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lease %d: SNRs %06d-%06d of pool %s (TAC %08d) to site %s until %s%s; it waits for the site's next lease request\n",
				l.ID, l.SNRStart, l.SNREnd, l.Pool, l.TAC, l.Site, l.ExpiresAt.Format(time.RFC3339), from)
			return nil
		},
	}
	f := grant.Flags()
	f.StringVar(&siteName, "site", "", "site name (enrolled with `tacline site enroll`)")
	f.StringVar(&pool, "pool", "", "pool to lease from")
	f.Int64Var(&size, "size", 10000, "number of SNRs (at most hq.lease.max_size)")
	f.DurationVar(&ttl, "ttl", 0, "how long the site may issue from the lease (default hq.lease.default_ttl; at most hq.lease.max_ttl)")
	c.AddCommand(grant)

	var listSite string
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List leases with their SNRs' fate at HQ",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := ledgerFromFlags(cmd)
			if err != nil {
				return err
			}
			defer db.Close()
			ls, err := db.Leases(cmd.Context(), listSite)
			if err != nil {
				return err
			}
			if asJSON {
				for _, l := range ls {
					if err := printJSON(cmd.OutOrStdout(), listedLease{Lease: site.WireLease(l), ForcedReturn: forcedReturnOf(l)}); err != nil {
						return err
					}
				}
				return nil
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "LEASE\tSITE\tPOOL\tSNRS\tEXPIRES\tRETURNED\tBOUND\tVOIDED\tREVOKED\tUNUSED\tRELEASED\tRELET")
			var unfinished []*forcedReturn
			for _, l := range ls {
				ret := "-"
				switch f := forcedReturnOf(l); {
				case !l.ReturnedAt.IsZero():
					ret = l.ReturnedAt.Format(time.RFC3339)
				case f != nil:
					ret = "forced, unfinished"
					unfinished = append(unfinished, f)
				case !l.ReturnRequestedAt.IsZero():
					ret = "requested"
				}
				fmt.Fprintf(w, "%d\t%s\t%s\t%06d-%06d\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n", l.ID, l.Site, l.Pool, l.SNRStart, l.SNREnd,
					l.ExpiresAt.Format(time.RFC3339), ret, l.Bound, l.Voided, l.Revoked, l.Unused, l.Released, l.Relet)
			}
			if err := w.Flush(); err != nil {
				return err
			}
			for _, f := range unfinished {
				fmt.Fprintf(cmd.OutOrStdout(), "lease %d: a forced return started at %s is unfinished, %d SNRs voided so far; finish it with `%s`\n",
					f.lease, f.StartedAt.Format(time.RFC3339), f.Voided, f.Finish)
			}
			return nil
		},
	}
	list.Flags().StringVar(&listSite, "site", "", "only this site's leases")
	list.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")
	c.AddCommand(list)

	var force bool
	ret := &cobra.Command{
		Use:   "return LEASE-ID",
		Short: "At HQ: ask the site to release a lease (its never-reserved SNRs come back for re-leasing); --force: void every unreported SNR now",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := leaseID(args[0])
			if err != nil {
				return err
			}
			db, err := ledgerFromFlags(cmd)
			if err != nil {
				return err
			}
			defer db.Close()
			if !force {
				if err := db.RequestLeaseReturn(cmd.Context(), id, operator()); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "lease %d: return requested; the site releases it at its next sync, and its SNRs never reserved go back to the pool (`tacline lease list`)\n", id)
				return nil
			}
			// Chunks of store.ReturnChunk SNRs, each committed: Ctrl-C or
			// SIGTERM stops between two, and running it again finishes.
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			out := progress.NewPrinter(os.Stderr, isTerminal(os.Stderr), 10*time.Second)
			start := time.Now()
			n, err := db.ReturnLeaseChunks(ctx, id, operator(), store.ReturnChunk, func(p store.ReturnProgress) {
				c := progress.Counter{Task: "lease " + strconv.FormatInt(id, 10) + " return", Unit: "SNRs", Total: p.Total}
				out.Update(c.Line(p.Done, time.Since(start)) + fmt.Sprintf(", %d voided", p.Voided))
			})
			out.End()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lease %d returned without the site's proof; %d unreported SNRs voided by this run\n", id, n)
			return nil
		},
	}
	ret.Flags().BoolVar(&force, "force", false, "the site is gone: return the lease without its proof, voiding every SNR it never reported (never re-leased)")
	c.AddCommand(ret)

	c.AddCommand(&cobra.Command{
		Use:   "release LEASE-ID",
		Short: "At a site: close a held lease for allocation and ship lease.released (its first SNR never reserved) to headquarters",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := leaseID(args[0])
			if err != nil {
				return err
			}
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			if cfg.Site.Name == "" {
				return errorf("lease release runs at a site (site.name set); at headquarters use `tacline lease return`")
			}
			db, err := openLedger(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer db.Close()
			r, err := db.ReleaseHeldLease(cmd.Context(), id, "operator", operator())
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), site.DescribeRelease(r))
			return nil
		},
	})
	return c
}

// listedLease is a line of `lease list --json`: the lease as the API
// shows it, and HQ's forced return of it, if one began.
type listedLease struct {
	wire.Lease
	ForcedReturn *forcedReturn `json:"forced_return,omitempty"`
}

// forcedReturn is a forced return (`lease return ID --force`) that began:
// when its first chunk committed, the SNRs voided so far, and, while it is
// unfinished (the lease still held), the command that finishes it.
type forcedReturn struct {
	lease     int64
	StartedAt time.Time `json:"started_at"`
	Finished  bool      `json:"finished"`
	Voided    int64     `json:"voided"`
	Finish    string    `json:"finish,omitempty"`
}

func forcedReturnOf(l store.LeaseStats) *forcedReturn {
	if l.ForcedAt.IsZero() {
		return nil
	}
	f := &forcedReturn{lease: l.ID, StartedAt: l.ForcedAt, Finished: !l.ReturnedAt.IsZero(), Voided: l.ForcedVoided}
	if !f.Finished {
		f.Finish = fmt.Sprintf("tacline lease return %d --force", l.ID)
	}
	return f
}

func leaseID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, errorf("lease id %q is not a number: `tacline lease list` shows them", s)
	}
	return id, nil
}

func newSiteCmd() *cobra.Command {
	c := &cobra.Command{Use: "site", Short: "Factory sites provisioning on leases from headquarters: enroll, status"}
	var s store.Site
	var creds string
	enroll := &cobra.Command{
		Use:   "enroll",
		Short: "Issue a site's client certificate from the station CA in the HSM and record the site at HQ with its checkpoint verifier key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if s.CertSerial != "" {
				// A certificate issued elsewhere: no HSM needed.
				db, err := ledgerFromFlags(cmd)
				if err != nil {
					return err
				}
				defer db.Close()
				if err := db.EnrollSite(cmd.Context(), s, operator()); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "enrolled site %s (certificate serial %s)\n", s.Name, s.CertSerial)
				return nil
			}
			return withLedgerAndHSM(cmd, func(ctx context.Context, cfg *config.File, db *store.DB, tok *hsm.Token) error {
				if creds == "" {
					creds = cfg.Path("sites")
				}
				cert, err := castore.EnrollSite(ctx, db, tok, s, creds, operator())
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "enrolled site %s (certificate serial %s); credentials in %s\n", s.Name,
					cert.SerialNumber.Text(16), filepath.Join(creds, "site-"+s.Name))
				return nil
			})
		},
	}
	f := enroll.Flags()
	f.StringVar(&s.Name, "name", "", "site name: 1-32 lower-case letters, digits or '-'")
	f.StringVar(&s.Verifier, "verifier", "", "the site's checkpoint verifier key (`tacline audit` at the site prints it)")
	f.StringVar(&s.Description, "description", "", "free text")
	f.StringSliceVar(&s.Pools, "pools", nil, "the HQ pools the site may lease from, comma separated")
	f.StringVar(&s.CertSerial, "cert-serial", "", "serial (hex) of a site client certificate issued elsewhere (then none is issued)")
	f.StringVar(&creds, "creds", "", "credentials directory (default: sites/ next to the config)")
	c.AddCommand(enroll)

	var one string
	var asJSON bool
	status := &cobra.Command{
		Use:   "status",
		Short: "At HQ: each site's leases, leased SNRs, bound, voided, unused, last sync, last verified checkpoint, consistent; at a site: its leases and pending events",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, db, err := configAndLedger(cmd)
			if err != nil {
				return err
			}
			defer db.Close()
			if cfg.Site.Name != "" {
				// At a site: its own view.
				st, err := site.Local(cmd.Context(), db, cfg.Site.Name)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(cmd.OutOrStdout(), st)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "site %s: %d SNRs left in unexpired leases, %d events not yet applied at headquarters\n",
					st.Site, st.Remaining, st.PendingEvents)
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "LEASE\tHQ POOL\tSNRS\tUSED\tFREE\tEXPIRES\tSTATE")
				for _, l := range st.Leases {
					exp := l.ExpiresAt.Format(time.RFC3339)
					if l.Expired {
						exp += " (expired)"
					}
					state := "held"
					switch {
					case l.Released:
						state = "released"
					case l.Closed:
						state = "closed (reservations in flight)"
					}
					fmt.Fprintf(w, "%d\t%s\t%s-%s\t%d\t%d\t%s\t%s\n", l.Lease, l.HQPool, l.SNRStart, l.SNREnd, l.Used, l.Free, exp, state)
				}
				return w.Flush()
			}
			hq, err := site.NewHQ(db, nil, nil)
			if err != nil {
				return err
			}
			sts, err := hq.Statuses(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				for _, s := range sts {
					if one != "" && s.Site != one {
						continue
					}
					if err := printJSON(cmd.OutOrStdout(), s); err != nil {
						return err
					}
				}
				return nil
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "SITE\tLEASES\tLEASED\tBOUND\tVOIDED\tUNUSED\tRELEASED\tRELET\tLAST SYNC\tVERIFIED SIZE\tCONSISTENT")
			for _, s := range sts {
				if one != "" && s.Site != one {
					continue
				}
				last := "never"
				if s.LastSync != nil {
					last = s.LastSync.Format(time.RFC3339)
				}
				fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%v\n", s.Site, len(s.Leases), s.LeasedSNRs, s.Bound, s.Voided, s.Unused,
					s.Released, s.Relet, last, s.VerifiedSize, s.Consistent)
			}
			return w.Flush()
		},
	}
	status.Flags().StringVar(&one, "site", "", "only this site")
	status.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")
	c.AddCommand(status)
	return c
}
