package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/tacline/tacline/devenv"
)

func init() { register(newDemoCmd) }

func newDemoCmd() *cobra.Command {
	var o devenv.DemoOptions
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
			_, err = devenv.Demo(ctx, o)
			return err
		},
	}
	c.Flags().StringVar(&o.Dir, "dir", "var/demo", "where the environment is made (replaced if it holds an earlier one)")
	c.Flags().IntVar(&o.Stations, "stations", 4, "stations on the line")
	c.Flags().IntVar(&o.Devices, "devices", 250, "devices per station")
	c.Flags().BoolVar(&o.Serve, "serve", false, "keep the server running after the demo until interrupted (Ctrl-C), to look at the web console")
	return c
}
