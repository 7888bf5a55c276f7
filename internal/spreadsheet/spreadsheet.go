// Package spreadsheet holds the one rule of what a spreadsheet takes for
// the start of a formula in a cell of a text file (CSV, a pipe file): the
// catalogue refuses such text on import, the reconciliation's files give
// such cells of a register's file a leading apostrophe.
package spreadsheet

import "strings"

// FormulaStarts lists the first characters that make a spreadsheet read a
// cell as a formula: =, +, - and @, and a tab or carriage return, which
// some take as one's start too. A hostile cell so started can run commands
// or leak data on the desktop of whoever opens the file.
const FormulaStarts = "=+-@\t\r"

// FormulaStart reports whether s starts as a formula (FormulaStarts).
func FormulaStart(s string) bool {
	return s != "" && strings.IndexByte(FormulaStarts, s[0]) >= 0
}
