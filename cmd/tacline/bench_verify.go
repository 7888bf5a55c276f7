package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tacline/tacline/bench/verifybench"
)

func init() { benchCommands = append(benchCommands, newBenchVerifyCmd) }

func newBenchVerifyCmd() *cobra.Command {
	o := verifybench.Options{Dir: "var", Duration: 3 * time.Second, CRLEntries: 1_000_000}
	var asJSON bool
	c := &cobra.Command{
		Use:   "verify [--duration D] [--crl-entries N] [--json]",
		Short: "Authenticity checks: offline and online checks/s (1 worker, all cores), cost against the ECDSA verifications, CRL signing time",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			if !asJSON {
				fmt.Fprintf(cmd.ErrOrStderr(), "bench verify: throwaway environment in %s, %s per phase, CRL of %d entries...\n", o.Dir, o.Duration, o.CRLEntries)
			}
			res, err := verifybench.Run(ctx, o)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), res)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "offline: %.0f checks/s (1 worker, %.0f us), %.0f/s (%d workers)\n", res.Offline1.PerSecond, res.Offline1.MicrosOp, res.OfflineN.PerSecond, res.OfflineN.Workers)
			fmt.Fprintf(w, "ECDSA verifications alone (%d chain signatures + challenge): %.0f/s (%.0f us); offline cost ratio %.2f (target <= 2)\n",
				res.ChainCertificates-1, res.ECDSA1.PerSecond, res.ECDSA1.MicrosOp, res.OfflineCostRatio)
			fmt.Fprintf(w, "online (challenge + check, ledger): %.0f/s (1 worker), %.0f/s (%d workers)\n", res.Online1.PerSecond, res.OnlineN.PerSecond, res.OnlineN.Workers)
			if res.CRLEntries > 0 {
				fmt.Fprintf(w, "CRL of %d revoked certificates signed in the HSM: %.2fs, %d bytes, verified %v\n", res.CRLEntries, res.CRLSeconds, res.CRLBytes, res.CRLVerified)
			}
			return nil
		},
	}
	f := c.Flags()
	f.DurationVar(&o.Duration, "duration", o.Duration, "length of each measured phase")
	f.IntVar(&o.CRLEntries, "crl-entries", o.CRLEntries, "revoked certificates in the CRL timing (0: skip)")
	f.IntVar(&o.Workers, "workers", 0, "workers of the all-cores phases (default GOMAXPROCS)")
	f.StringVar(&o.Dir, "dir", o.Dir, "directory for the throwaway environment")
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	return c
}
