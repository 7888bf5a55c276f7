package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tacline/tacline/register/sim"
)

func init() { register(newRegisterSimCmd) }

func newRegisterSimCmd() *cobra.Command {
	var cfg sim.Config
	cmd := &cobra.Command{
		Use:   "register-sim --listen 127.0.0.1:PORT --db FILE",
		Short: "Run a national register simulator (the register API, DIRBS list, fault injection)",
		Long: `Run a register simulator speaking the API of docs/register-api.md, with its
own SQLite store in --db. It prints "register-sim listening on http://ADDR"
once it accepts connections (useful with port 0) and serves until SIGINT or
SIGTERM. Faults can be changed at run time: PUT /admin/faults with
{"fail_rate":0.3,"drop_rate":0.1,"garbage_rate":0,"latency":50000000}
(latency in nanoseconds); GET /admin/stats counts requests and items.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			out := cmd.OutOrStdout()
			return sim.Run(ctx, cfg, log, func(addr string) {
				fmt.Fprintf(out, "register-sim listening on http://%s\n", addr)
			})
		},
	}
	cmd.SetContext(context.Background())
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:8089", "loopback address to listen on")
	f.StringVar(&cfg.DB, "db", "", "the simulator's SQLite file (created if missing)")
	f.Float64Var(&cfg.Faults.FailRate, "fail-rate", 0, "share of requests answered 503 without applying")
	f.Float64Var(&cfg.Faults.DropRate, "drop-rate", 0, "share of requests applied, then dropped without an answer")
	f.Float64Var(&cfg.Faults.GarbageRate, "garbage-rate", 0, "share of requests applied, then answered 200 with garbage")
	f.DurationVar(&cfg.Faults.Latency, "latency", 0, "delay before each request is handled")
	return cmd
}
