// Package spreadsheet holds the rules of text files that pass through
// spreadsheets (CSV, a pipe file): what a spreadsheet takes for the start
// of a formula in a cell (the catalogue refuses such text on import, the
// reconciliation's files give such cells of a register's file a leading
// apostrophe), and how a file saved as "Unicode text" (UTF-16) is known
// (the catalogue import and the reconciliation refuse it).
package spreadsheet

import (
	"bytes"
	"strings"
)

// FormulaStarts lists the first characters that make a spreadsheet read a
// cell as a formula: =, +, - and @, and a tab or carriage return, which
// some take as one's start too. A hostile cell so started can run commands
// or leak data on the desktop of whoever opens the file.
const FormulaStarts = "=+-@\t\r"

// FormulaStart reports whether s starts as a formula (FormulaStarts).
func FormulaStart(s string) bool {
	return s != "" && strings.IndexByte(FormulaStarts, s[0]) >= 0
}

// IsUTF16 reports whether a file's first line is UTF-16: a byte-order mark
// of UTF-16 (FF FE or FE FF), or a NUL byte, which no UTF-8 text line holds
// and UTF-16 has in every ASCII character.
func IsUTF16(first []byte) bool {
	return bytes.HasPrefix(first, []byte{0xff, 0xfe}) || bytes.HasPrefix(first, []byte{0xfe, 0xff}) || bytes.IndexByte(first, 0) >= 0
}
