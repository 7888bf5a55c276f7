package main

import (
	"github.com/spf13/cobra"
)

// subcommands registers constructors from the other files of this package, so
// that each file adds its own commands without editing this one.
var subcommands []func() *cobra.Command

func register(f func() *cobra.Command) { subcommands = append(subcommands, f) }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "tacline",
		Short:         "Allocate IMEIs, bind them to HSM-signed device certificates, report them to the national register",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionString(),
	}
	root.PersistentFlags().String("config", "tacline.yaml", "configuration file")
	for _, f := range subcommands {
		root.AddCommand(f())
	}
	return root
}
