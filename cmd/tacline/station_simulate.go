package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/factory/sim"
)

func init() { register(newStationCmd) }

// stationCommands lets other files add `tacline station X` subcommands
// (enroll, disable, ...) without editing this one.
var stationCommands []func() *cobra.Command

func newStationCmd() *cobra.Command {
	c := &cobra.Command{Use: "station", Short: "Factory stations: enrolment and the line simulator"}
	c.AddCommand(newStationSimulateCmd())
	for _, f := range stationCommands {
		c.AddCommand(f())
	}
	return c
}

func newStationSimulateCmd() *cobra.Command {
	var (
		server, credsDir, devicesOut, keysDir, runID string
		stations, devices, imeis, retries            int
		rate                                         float64
		timeout, retryBudget                         time.Duration
		asJSON, preallocate                          bool
	)
	c := &cobra.Command{
		Use:   "simulate --server URL --creds DIR [--stations N] [--devices M] [--rate R] [--json]",
		Short: "Run a simulated factory line: N stations each provisioning M devices, every identity verified",
		Long: `Runs N concurrent stations against the server, each provisioning M devices
that make their own P-256 key and CSR. Every returned identity is checked
(chain to the root, IMEIs in the SAN, IMEIs valid and in the station's pools,
certificate key = device key). The exit status is non-zero if any device
failed, and says verification_failed if any identity failed the checks.

--creds DIR holds DIR/<station-id>/{cert.pem,key.pem,product}, DIR/ca-chain.pem
(device roots) and DIR/server-ca.pem (verifies the server); --stations N uses
the first N station directories in name order.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if server == "" || credsDir == "" {
				// Defaults from --config (the demo's tacline.yaml): the
				// server's listen address and the stations/ directory.
				cfg, err := loadConfig(cmd)
				if err != nil {
					return errorf("--server and --creds are required (or a --config file whose server.listen and stations/ give them): %w", err)
				}
				if server == "" && cfg.Server.Listen != "" {
					server = "https://" + loopbackIfEmpty(cfg.Server.Listen)
				}
				if credsDir == "" {
					credsDir = cfg.Path("stations")
				}
				if server == "" {
					return errorf("--server is required: %s has no server.listen", cfg.Path(""))
				}
			}
			creds, err := factory.LoadCreds(credsDir, stations)
			if err != nil {
				return err
			}
			cfg := sim.Config{
				ServerURL: server, ServerCAFile: creds.ServerCAFile, RootsFile: creds.RootsFile,
				Stations: creds.Stations, Devices: devices, Rate: rate, IMEICount: imeis,
				KeysDir: keysDir, RunID: runID, PreAllocate: preallocate,
				Client: sim.ClientTuning{Timeout: timeout, MaxRetries: retries, RetryBudget: retryBudget},
			}
			if !asJSON {
				cfg.Progress = os.Stderr
			}
			if devicesOut != "" {
				f, err := os.OpenFile(devicesOut, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
				if err != nil {
					return errorf("--devices-out: %v", err)
				}
				defer f.Close()
				cfg.DevicesOut = f
			}
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			sum, runErr := sim.Simulate(ctx, cfg)
			if sum.Stations == 0 { // nothing ran
				return runErr
			}
			if asJSON {
				if err := printJSON(cmd.OutOrStdout(), sum); err != nil {
					return err
				}
			} else {
				printSummary(cmd.OutOrStdout(), sum)
			}
			return runErr
		},
	}
	f := c.Flags()
	f.StringVar(&server, "server", "", "server URL, https://host:port (default: server.listen of --config)")
	f.StringVar(&credsDir, "creds", "", "station credentials directory (default: stations/ next to --config)")
	f.IntVar(&stations, "stations", 0, "number of stations (default: every station in --creds)")
	f.IntVar(&devices, "devices", 10, "devices per station")
	f.Float64Var(&rate, "rate", 0, "offered devices per second over all stations (0: as fast as possible)")
	f.IntVar(&imeis, "imeis", 0, "IMEIs per device (0: the TAC's default)")
	f.StringVar(&devicesOut, "devices-out", "", "write one JSON object per device (device_serial, imeis, certificate) to this file")
	f.StringVar(&keysDir, "keys-dir", "", "write each device's private key as <device_serial>.pem here (demo only: a real device key never leaves its secure element)")
	f.StringVar(&runID, "run-id", "", "run id in device serials and request ids (default: random)")
	f.DurationVar(&timeout, "timeout", factory.DefaultTimeout, "timeout of one request attempt")
	f.IntVar(&retries, "retries", 0, "most retries of a retryable failure, same request id (0: as many as --retry-budget allows; -1: none)")
	f.DurationVar(&retryBudget, "retry-budget", factory.DefaultRetryBudget, "how long after a request's first attempt a retry may still start")
	f.BoolVar(&preallocate, "preallocate", false, "reserve each station's IMEIs first (label printing), then bind each device to its group")
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	return c
}

// loopbackIfEmpty turns ":8443" into "127.0.0.1:8443".
func loopbackIfEmpty(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || (host != "" && host != "0.0.0.0" && host != "::") {
		return addr
	}
	return net.JoinHostPort("127.0.0.1", port)
}

// printSummary writes a simulation summary for people.
func printSummary(w io.Writer, s sim.Summary) {
	fmt.Fprintf(w, "run %s: %d devices provisioned and verified, %d failed, %d stations, %.2fs\n", s.RunID, s.Devices, s.Failed, s.Stations, s.ElapsedSeconds)
	fmt.Fprintf(w, "throughput %.1f devices/s; latency p50 %.2f ms, p99 %.2f ms, max %.2f ms; %d retries\n", s.DevicesPerSecond, s.P50ms, s.P99ms, s.MaxMs, s.Retries)
	if len(s.ErrorsByCode) > 0 {
		codes := make([]string, 0, len(s.ErrorsByCode))
		for c := range s.ErrorsByCode {
			codes = append(codes, c)
		}
		sort.Strings(codes)
		parts := make([]string, len(codes))
		for i, c := range codes {
			parts[i] = fmt.Sprintf("%s %d", c, s.ErrorsByCode[c])
		}
		fmt.Fprintf(w, "errors: %s\n", strings.Join(parts, ", "))
	}
}
