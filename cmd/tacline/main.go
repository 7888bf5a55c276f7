// Command tacline is the one binary of tacline: the provisioning server and
// every operator, auditor and regulator tool, as subcommands. Each subcommand
// parses its flags and configuration and calls a library package; no business
// logic lives here.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/tacline/tacline/tacerr"
)

func main() {
	root := newRootCmd()
	if err := root.Execute(); err != nil {
		var ex exitError
		if errors.As(err, &ex) {
			os.Exit(ex.code)
		}
		fmt.Fprintln(os.Stderr, "tacline:", err)
		if e, ok := tacerr.As(err); ok && e.Code != tacerr.Internal {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// exitError ends the process with a given status without printing anything
// more (the command already reported its result).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }
