package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tacline/tacline/tacerr"
)

// TestIMEICheckStdinLongLine: a line of standard input too long to be a
// value (a binary file piped in by mistake) stops the run with
// invalid_input naming the line, after the results of the values before
// it, which were written (they were lost in the unflushed buffer).
func TestIMEICheckStdinLongLine(t *testing.T) {
	t.Parallel()
	in := "35209900176148\n" + strings.Repeat("9", 70<<10) + "\n490154203237518\n"
	var out bytes.Buffer
	err := runIMEICheck(strings.NewReader(in), &out, []string{"-"}, false)
	if e, ok := tacerr.As(err); !ok || e.Code != tacerr.InvalidInput || !strings.Contains(e.Message, "line 2") {
		t.Fatalf("imei check of a 70 KiB line = %v; want invalid_input naming line 2", err)
	}
	if !strings.Contains(out.String(), `"35209900176148": valid IMEI`) {
		t.Fatalf("the result of line 1 was not written: %q", out.String())
	}
}
