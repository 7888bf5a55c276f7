package console

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestClip: the public check page's echoed query is cut to 64 bytes on a
// character boundary: a multi-byte character across the limit goes whole.
func TestClip(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"35-209900-176148-1", "35-209900-176148-1"},
		{strings.Repeat("1", 70), strings.Repeat("1", 64)},
		{strings.Repeat("1", 63) + "é1", strings.Repeat("1", 63)},
		{strings.Repeat("1", 62) + "€", strings.Repeat("1", 62)},
	} {
		got := clip(c.in, 64)
		if got != c.want || !utf8.ValidString(got) || len(got) > 64 {
			t.Errorf("clip(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
