package sqlitefile

import "testing"

func TestURI(t *testing.T) {
	for _, c := range []struct{ path, params, want string }{
		{"/var/ledger.db", "", "file:/var/ledger.db"},
		{"/var/ledger.db", "mode=ro", "file:/var/ledger.db?mode=ro"},
		{"/tmp/line#2 100%41/a?b.db", "mode=ro", "file:/tmp/line%232 100%2541/a%3fb.db?mode=ro"},
	} {
		if got := URI(c.path, c.params); got != c.want {
			t.Errorf("URI(%q, %q) = %q, want %q", c.path, c.params, got, c.want)
		}
	}
}
