package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tacline/tacline/config"
)

func init() { register(newConfigCmd) }

func newConfigCmd() *cobra.Command {
	c := &cobra.Command{Use: "config", Short: "Check a configuration file; print the reference of every key"}
	var files bool
	check := &cobra.Command{
		Use:   "check",
		Short: "Validate the --config file without starting anything (exit status 2 and every error, each naming its field)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path, _ := cmd.Flags().GetString("config")
			cfg, err := loadConfig(cmd)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			errs := cfg.Check(files)
			for _, e := range errs {
				fmt.Fprintf(cmd.ErrOrStderr(), "tacline: %s: %v\n", path, e)
			}
			if len(errs) > 0 {
				return exitError{code: 2}
			}
			what := "valid"
			if files {
				what = "valid and every file it names is readable"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", path, what)
			return nil
		},
	}
	check.Flags().BoolVar(&files, "files", false, "also check that every file the configuration names can be read")
	c.AddCommand(check, &cobra.Command{
		Use:   "reference",
		Short: "Print every configuration key with its type, default and meaning (Markdown; docs/configuration.md)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return config.WriteReference(cmd.OutOrStdout())
		},
	})
	return c
}
