package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/tacline/tacline/imei"
	regpkg "github.com/tacline/tacline/register"
	"github.com/tacline/tacline/tacerr"
)

func init() { register(newRegisterCmd) }

func newRegisterCmd() *cobra.Command {
	c := &cobra.Command{Use: "register", Short: "Reporting to the national register: delivery status, the delivery worker"}
	c.AddCommand(newRegisterStatusCmd(), newRegisterDeliverCmd(), newRegisterRequeueCmd(), newRegisterPruneCmd(), newRegisterCheckCmd())
	return c
}

func newRegisterStatusCmd() *cobra.Command {
	var db dbFlags
	var asJSON bool
	c := &cobra.Command{
		Use:   "status [--json]",
		Short: "Show the register outbox: lag, counts by state, clone alerts, recent rejections, last acknowledgement",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ledger, err := db.open(cmd)
			if err != nil {
				return err
			}
			defer ledger.Close()
			r, err := regpkg.Status(cmd.Context(), ledger)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), r)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "pending %d (lag %.1fs), acknowledged %d (and %d pruned), rejected %d, clone alerts %d\n",
				r.Pending, r.LagSeconds, r.Counts[regpkg.StateAcknowledged], r.Pruned, r.Counts[regpkg.StateRejected], r.CloneAlerts)
			if r.LastError != "" {
				fmt.Fprintf(w, "last delivery error: %s\n", r.LastError)
			}
			if r.LastAck != nil {
				fmt.Fprintf(w, "last acknowledgement: %s %s receipt %s at %s\n", r.LastAck.IMEI, r.LastAck.Event, r.LastAck.ReceiptID, r.LastAck.At.Format(time.RFC3339))
			}
			for _, j := range r.RecentRejections {
				alert := ""
				if j.CloneAlert {
					alert = " CLONE ALERT"
				}
				fmt.Fprintf(w, "rejected%s: %s %s at %s: %s\n", alert, j.IMEI, j.Event, j.At.Format(time.RFC3339), j.Reason)
			}
			return nil
		},
	}
	db.add(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return c
}

func newRegisterDeliverCmd() *cobra.Command {
	var db dbFlags
	var cfg regpkg.Config
	var metricsAddr string
	c := &cobra.Command{
		Use:   "deliver --url URL",
		Short: "Run the delivery worker: send outbox events to the register until SIGINT/SIGTERM",
		Long: `Run the register delivery worker. Several may run against one PostgreSQL
ledger; each claims its own batches. With --metrics, Prometheus metrics are
served on that loopback address at /metrics.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ledger, err := db.open(cmd)
			if err != nil {
				return err
			}
			defer ledger.Close()
			reg := prometheus.NewRegistry()
			m, err := regpkg.NewMetrics(reg, ledger)
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			w, err := regpkg.NewWorker(ledger, cfg, m, log)
			if err != nil {
				return err
			}
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			if metricsAddr != "" {
				ln, err := net.Listen("tcp", metricsAddr)
				if err != nil {
					return fmt.Errorf("--metrics: %w", err)
				}
				srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 10 * time.Second}
				go func() {
					if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
						log.Error("metrics server", "err", err)
					}
				}()
				defer srv.Close()
			}
			log.Info("register delivery started", "register", redactURL(cfg.URL))
			return w.Run(ctx)
		},
	}
	db.add(c)
	f := c.Flags()
	f.StringVar(&cfg.URL, "url", "", "the register's base URL (https:// with --cert-file/--key-file unless the host is loopback)")
	f.StringVar(&cfg.TLS.CAFile, "ca-file", "", "CA bundle that verifies the register (default: the system's)")
	f.StringVar(&cfg.TLS.CertFile, "cert-file", "", "client certificate tacline authenticates to the register with (PEM)")
	f.StringVar(&cfg.TLS.KeyFile, "key-file", "", "the client certificate's key (PEM)")
	f.IntVar(&cfg.BatchSize, "batch-size", 0, "events per request (default 100)")
	f.DurationVar(&cfg.BatchAge, "batch-age", 0, "longest wait for a batch to fill (default 1s)")
	f.DurationVar(&cfg.Timeout, "timeout", 0, "request timeout (default 10s)")
	f.DurationVar(&cfg.Lease, "lease", 0, "claim lease of a batch (default 1m)")
	f.DurationVar(&cfg.Poll, "poll", 0, "idle poll interval (default 500ms)")
	f.DurationVar(&cfg.Backoff.Initial, "backoff-initial", 0, "first retry delay (default 1s)")
	f.DurationVar(&cfg.Backoff.Max, "backoff-max", 0, "longest retry delay (default 5m)")
	f.IntVar(&cfg.Breaker.Failures, "breaker-failures", 0, "failed batches that open the circuit breaker (default 5)")
	f.DurationVar(&cfg.Breaker.Cooldown, "breaker-cooldown", 0, "how long the breaker stays open (default 30s)")
	f.DurationVar(&cfg.Retention, "retention", regpkg.DefaultRetention, "delete acknowledged events older than this (0: keep forever)")
	f.IntVar(&cfg.PruneBatch, "prune-batch", 0, fmt.Sprintf("rows deleted per pruning transaction (default %d)", regpkg.DefaultPruneBatch))
	f.StringVar(&metricsAddr, "metrics", "", "serve Prometheus metrics on this address")
	return c
}

// redactURL drops credentials from a URL before it is logged.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(register url)"
	}
	return u.Redacted()
}

func newRegisterRequeueCmd() *cobra.Command {
	var db dbFlags
	c := &cobra.Command{
		Use:   "requeue IMEI",
		Short: "Send an IMEI's rejected register events again (after a clone alert is resolved with the register)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := imei.Parse(args[0])
			if err != nil {
				return err
			}
			ledger, err := db.open(cmd)
			if err != nil {
				return err
			}
			defer ledger.Close()
			n, err := regpkg.Requeue(cmd.Context(), ledger, m, operator())
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%d rejected events of %s requeued\n", n, m)
			return err
		},
	}
	db.add(c)
	return c
}

func newRegisterPruneCmd() *cobra.Command {
	var db dbFlags
	var olderThan time.Duration
	var batch int
	var asJSON bool
	c := &cobra.Command{
		Use:   "prune [--older-than D] [--json]",
		Short: "Delete acknowledged register outbox events older than D (default: the config's register.retention)",
		Long: `Delete acknowledged register outbox events acknowledged more than D ago, in
batches, and print how many were deleted. Pending, sent and rejected events
are never deleted, nor is anything in the ledger. Without --older-than the
--config file's register.retention applies (default 720h, 30 days; 0 keeps
everything and nothing is deleted); with --db-driver/--dsn and no
--older-than, 720h. The delivery worker of tacline serve and register
deliver does the same every minute. A DIRBS delta since an export older
than the deleted events is refused afterwards (take a full list).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			age := olderThan
			if !cmd.Flags().Changed("older-than") {
				age = regpkg.DefaultRetention
				if db.driver == "" && db.dsn == "" {
					cfg, err := loadConfig(cmd)
					if err != nil {
						return err
					}
					age = cfg.Register.Retention
					if batch == 0 {
						batch = cfg.Register.PruneBatch
					}
				}
			} else if olderThan <= 0 {
				return errorf("--older-than must be positive, e.g. 720h (30 days)")
			}
			if batch < 0 || batch > 10000 {
				return errorf("--batch: %d is out of range: 1 to 10000", batch)
			}
			w := cmd.OutOrStdout()
			if age == 0 {
				if asJSON {
					return printJSON(w, regpkg.PruneResult{})
				}
				_, err := fmt.Fprintln(w, "register.retention is 0 (keep forever): nothing deleted; pass --older-than to prune anyway")
				return err
			}
			ledger, err := db.open(cmd)
			if err != nil {
				return err
			}
			defer ledger.Close()
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			r, err := regpkg.Prune(ctx, ledger, age, batch, 0)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(w, r)
			}
			_, err = fmt.Fprintf(w, "deleted %d acknowledged events acknowledged before %s in %d batches; %d acknowledged kept, %d pruned in all\n",
				r.Deleted, r.Before.Format(time.RFC3339), r.Batches, r.Stats.Acknowledged, r.Stats.Pruned)
			return err
		},
	}
	db.add(c)
	c.Flags().DurationVar(&olderThan, "older-than", 0, "delete events acknowledged longer ago than this, e.g. 720h")
	c.Flags().IntVar(&batch, "batch", 0, fmt.Sprintf("rows per transaction (default: register.prune_batch, %d)", regpkg.DefaultPruneBatch))
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return c
}

func newRegisterCheckCmd() *cobra.Command {
	var db dbFlags
	var asJSON bool
	c := &cobra.Command{
		Use:   "check [--json]",
		Short: "Check the register outbox counters against its rows (exit 1 on a difference)",
		Long: `Count the acknowledged register outbox rows (a scan, unlike register status)
and compare the count with the counter that register status reports. Exit
status 1 names the difference.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ledger, err := db.open(cmd)
			if err != nil {
				return err
			}
			defer ledger.Close()
			s, counted, cerr := regpkg.CheckCounters(cmd.Context(), ledger)
			if cerr != nil && !tacerr.Is(cerr, tacerr.LedgerInvariant) {
				return cerr
			}
			w := cmd.OutOrStdout()
			if asJSON {
				out := struct {
					OK      bool         `json:"ok"`
					Counted int64        `json:"counted_acknowledged"`
					Stats   regpkg.Stats `json:"stats"`
					Error   string       `json:"error,omitempty"`
				}{OK: cerr == nil, Counted: counted, Stats: s}
				if cerr != nil {
					out.Error = cerr.Error()
				}
				if err := printJSON(w, out); err != nil {
					return err
				}
			} else if cerr == nil {
				fmt.Fprintf(w, "ok: %d acknowledged events counted and kept; %d pruned, through outbox id %d\n", counted, s.Pruned, s.PrunedThrough)
			} else {
				fmt.Fprintf(w, "violation: %v\n", cerr)
			}
			if cerr != nil {
				return exitError{code: 1}
			}
			return nil
		},
	}
	db.add(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return c
}
