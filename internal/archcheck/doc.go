// Package archcheck holds the module's imports to the package table of
// docs/architecture.md. It has no code: its test runs `go list` over the
// module and fails when a package imports one of the module's packages that
// its row in the table does not name, or when a package has no row, so the
// map a new maintainer reads stays the territory.
package archcheck
