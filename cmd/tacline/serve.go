package main

import (
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tacline/tacline/server"
)

func init() { register(newServeCmd) }

func newServeCmd() *cobra.Command {
	var listen, readyFile, level, logFormat, cpuProfile, memProfile string
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the provisioning server (HTTP API over mutual TLS)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var lv slog.Level
			if err := lv.UnmarshalText([]byte(level)); err != nil {
				return errorf("--log-level: %v", err)
			}
			log, err := newLogger(os.Stderr, logFormat, lv)
			if err != nil {
				return err
			}
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			if listen != "" {
				cfg.Server.Listen = listen
			}
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			if memProfile != "" {
				// One sample per 4 KiB allocated on average (the
				// default is 512 KiB): a device's ~100 KiB is seen by
				// site, at a cost that does not matter in a profiling run.
				runtime.MemProfileRate = 4 << 10
				f, err := os.Create(memProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				defer func() {
					runtime.GC() // the profile holds what was allocated up to the last collection
					if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
						log.Error("write the allocation profile", "file", memProfile, "err", err)
					}
				}()
			}
			server.BuildVersion = versionString()
			s, err := server.New(ctx, cfg, log)
			if err != nil {
				return err
			}
			defer s.Close()
			// SIGHUP: read the ledger's issuers now (after `tacline ca
			// rotate`), without waiting for provisioning.issuer_refresh.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for {
					select {
					case <-ctx.Done():
						return
					case <-hup:
						log.Info("SIGHUP: refreshing the device issuers")
						s.TriggerIssuerRefresh()
					}
				}
			}()
			return s.Run(ctx, func(addr string) {
				if readyFile != "" {
					if err := server.WriteReadyFile(readyFile, addr); err != nil {
						log.Error("write ready file", "err", err)
					}
				}
			})
		},
	}
	c.Flags().StringVar(&listen, "listen", "", "override server.listen (127.0.0.1:0 picks a free port)")
	c.Flags().StringVar(&readyFile, "ready-file", "", "write the listening address to this file once serving")
	c.Flags().StringVar(&level, "log-level", "info", "debug, info, warn or error")
	c.Flags().StringVar(&logFormat, "log-format", "json", "json (one object per line, for log shippers) or text")
	c.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	c.Flags().StringVar(&memProfile, "memprofile", "", "write an allocation profile of the whole run (pprof allocs, sampled) to this file when the server stops")
	return c
}

// newLogger writes structured logs to w: JSON lines (slog's JSON handler,
// what journald forwarders, Loki, Elasticsearch and the like ingest) or
// slog's key=value text.
func newLogger(w io.Writer, format string, lv slog.Level) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, errorf("--log-format: %q is not json or text", format)
}
