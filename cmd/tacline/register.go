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
)

func init() { register(newRegisterCmd) }

func newRegisterCmd() *cobra.Command {
	c := &cobra.Command{Use: "register", Short: "Reporting to the national register: delivery status, the delivery worker"}
	c.AddCommand(newRegisterStatusCmd(), newRegisterDeliverCmd(), newRegisterRequeueCmd())
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
			fmt.Fprintf(w, "pending %d (lag %.1fs), acknowledged %d, rejected %d, clone alerts %d\n",
				r.Pending, r.LagSeconds, r.Counts[regpkg.StateAcknowledged], r.Counts[regpkg.StateRejected], r.CloneAlerts)
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
	f.StringVar(&cfg.URL, "url", "", "the register's base URL")
	f.IntVar(&cfg.BatchSize, "batch-size", 0, "events per request (default 100)")
	f.DurationVar(&cfg.BatchAge, "batch-age", 0, "longest wait for a batch to fill (default 1s)")
	f.DurationVar(&cfg.Timeout, "timeout", 0, "request timeout (default 10s)")
	f.DurationVar(&cfg.Lease, "lease", 0, "claim lease of a batch (default 1m)")
	f.DurationVar(&cfg.Poll, "poll", 0, "idle poll interval (default 500ms)")
	f.DurationVar(&cfg.Backoff.Initial, "backoff-initial", 0, "first retry delay (default 1s)")
	f.DurationVar(&cfg.Backoff.Max, "backoff-max", 0, "longest retry delay (default 5m)")
	f.IntVar(&cfg.Breaker.Failures, "breaker-failures", 0, "failed batches that open the circuit breaker (default 5)")
	f.DurationVar(&cfg.Breaker.Cooldown, "breaker-cooldown", 0, "how long the breaker stays open (default 30s)")
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
