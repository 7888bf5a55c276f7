// Package sqlitefile names SQLite files as URI filenames: the one place
// where a file path becomes the string a SQLite driver opens.
package sqlitefile

import "strings"

// URI is the URI filename that opens the SQLite file at path with the
// query params (empty: none). SQLite decodes %HH in a URI's path and ends
// the path at '?' or '#', so those three characters are escaped: a ledger
// in a directory named "line#2" would otherwise open the file "line" (and
// two tests whose subtests were named "sqlite" and "sqlite#01" shared one
// file in /tmp).
func URI(path, params string) string {
	u := "file:" + pathEscaper.Replace(path)
	if params != "" {
		u += "?" + params
	}
	return u
}

var pathEscaper = strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")
