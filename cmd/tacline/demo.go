package main

import (
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/tacline/tacline/devenv"
)

func init() { register(newDemoCmd) }

func newDemoCmd() *cobra.Command {
	var o devenv.DemoOptions
	var sites, killSites, killHQ int
	var leaseSize int64
	var cutWhole, keepOld bool
	var cutFor, killEvery time.Duration
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run the main job end to end on a fresh development environment (SQLite, SoftHSM2)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bin, err := os.Executable()
			if err != nil {
				return err
			}
			o.Bin = bin
			o.Out = cmd.OutOrStdout()
			if isTerminal(os.Stderr) {
				o.Progress = os.Stderr
			}
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			if sites > 0 {
				// Headquarters and factory sites (docs/sites.md).
				_, err = devenv.SitesDemo(ctx, devenv.SitesOptions{Dir: o.Dir, Sites: sites, StationsPerSite: stationsPerSite(cmd, o.Stations),
					Devices: o.Devices, Bin: bin, Out: o.Out, CutFor: cutFor, KillSites: killSites, KillHQ: killHQ, KillEvery: killEvery, LeaseSize: leaseSize, CutWholeRun: cutWhole, KeepOldLedgers: keepOld})
				return err
			}
			_, err = devenv.Demo(ctx, o)
			return err
		},
	}
	c.Flags().StringVar(&o.Dir, "dir", "var/demo", "where the environment is made (replaced if it holds an earlier one)")
	c.Flags().IntVar(&o.Stations, "stations", 4, "stations on the line")
	c.Flags().IntVar(&o.Devices, "devices", 250, "devices per station")
	c.Flags().BoolVar(&o.Serve, "serve", false, "keep the server running after the demo until interrupted (Ctrl-C), to look at the web console")
	c.Flags().IntVar(&sites, "sites", 0, "run headquarters and this many factory sites as separate processes (docs/sites.md)")
	c.Flags().DurationVar(&cutFor, "cut-for", 5*time.Second, "with --sites: how long the last site's link to headquarters is cut")
	c.Flags().IntVar(&killSites, "kill-sites", 0, "with --sites: SIGKILL a site (in turn) this many times during the run, restarting it")
	c.Flags().BoolVar(&keepOld, "keep-old-ledgers", false, "with --sites: keep each site's ledger as it was before its line ran (ledger.db.old)")
	c.Flags().BoolVar(&cutWhole, "cut-whole-run", false, "with --sites: cut the last site's link for its whole line run, then measure the catch-up")
	c.Flags().Int64Var(&leaseSize, "lease-size", 0, "with --sites: SNRs per lease (default: enough for the whole run)")
	c.Flags().DurationVar(&killEvery, "kill-every", time.Second, "with --kill-sites/--kill-hq: time between two kills")
	c.Flags().IntVar(&killHQ, "kill-hq", 0, "with --sites: SIGKILL headquarters this many times during the run, restarting it")
	return c
}

// stationsPerSite is --stations when given, else 2 per site.
func stationsPerSite(cmd *cobra.Command, n int) int {
	if cmd.Flags().Changed("stations") {
		return n
	}
	return 2
}
