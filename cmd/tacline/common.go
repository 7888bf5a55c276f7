package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/tacline/tacline/config"
	"github.com/tacline/tacline/server"
	"github.com/tacline/tacline/store"
)

// loadConfig reads the file named by --config.
func loadConfig(cmd *cobra.Command) (*config.File, error) {
	path, _ := cmd.Flags().GetString("config")
	return config.Load(path)
}

// openLedger opens (and migrates) the ledger named by the configuration.
func openLedger(ctx context.Context, cfg *config.File) (*store.DB, error) {
	return server.OpenLedger(ctx, cfg)
}

// ledgerFromFlags loads the --config file and opens its ledger.
func ledgerFromFlags(cmd *cobra.Command) (*store.DB, error) {
	_, db, err := configAndLedger(cmd)
	return db, err
}

// configAndLedger loads the --config file and opens its ledger, for
// commands that read the configuration too.
func configAndLedger(cmd *cobra.Command) (*config.File, *store.DB, error) {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return nil, nil, err
	}
	db, err := openLedger(cmd.Context(), cfg)
	if err != nil {
		return nil, nil, err
	}
	return cfg, db, nil
}

// signalContext is cancelled on SIGINT or SIGTERM.
func signalContext(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

// printJSON writes v as one line of JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// isTerminal reports whether f is a terminal (progress bars only there).
func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// operator names the person or process behind a CLI change, for the audit log.
func operator() string {
	u := os.Getenv("USER")
	if u == "" {
		u = "unknown"
	}
	return "cli:" + u
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
