package progress_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/tacline/tacline/internal/progress"
)

// TestLine: the line says the count, the percentage, the rate (and a
// second rate), the time so far and the time left at that rate.
func TestLine(t *testing.T) {
	c := progress.Counter{Task: "prefill", Unit: "devices", Total: 300000, Also: progress.Rate{Unit: "rows", Per: 19}}
	for _, tc := range []struct {
		done    int64
		elapsed time.Duration
		want    string
	}{
		{26000, 22*time.Second + 400*time.Millisecond, "prefill: 26000/300000 devices (8.7%), 1161 devices/s (22054 rows/s), 22s elapsed, ETA 3m56s"},
		{0, 0, "prefill: 0/300000 devices (0.0%), 0 devices/s (0 rows/s), 0s elapsed, ETA unknown"},
		{300000, time.Minute, "prefill: 300000/300000 devices (100.0%), 5000 devices/s (95000 rows/s), 1m0s elapsed, ETA 0s"},
	} {
		if got := c.Line(tc.done, tc.elapsed); got != tc.want {
			t.Errorf("Line(%d, %s) = %q\nwant %q", tc.done, tc.elapsed, got, tc.want)
		}
	}
	pages := progress.Counter{Task: "rebuild", Unit: "pages", Total: 1000}
	if got, want := pages.Line(250, 10*time.Second), "rebuild: 250/1000 pages (25.0%), 25 pages/s, 10s elapsed, ETA 30s"; got != want {
		t.Errorf("without a second rate: %q, want %q", got, want)
	}
}

// TestPrinter: on a terminal every update rewrites the line in place and
// Print ends it; elsewhere updates are lines of their own, at most one per
// interval (here an hour: only the first), and Print always writes.
func TestPrinter(t *testing.T) {
	var tty bytes.Buffer
	p := progress.NewPrinter(&tty, true, time.Hour)
	p.Update("a")
	p.Update("b")
	p.Print("done")
	p.End()
	if got, want := tty.String(), "\ra\x1b[K\rb\x1b[K\rdone\x1b[K\n"; got != want {
		t.Errorf("terminal: %q, want %q", got, want)
	}
	var log bytes.Buffer
	p = progress.NewPrinter(&log, false, time.Hour)
	p.Print("start")
	p.Update("a")
	p.Update("b")
	p.Print("done")
	p.End()
	if got, want := log.String(), "start\ndone\n"; got != want {
		t.Errorf("plain: %q, want %q", got, want)
	}
	log.Reset()
	p = progress.NewPrinter(&log, false, time.Hour)
	p.Update("a")
	p.Update("b")
	if got, want := log.String(), "a\n"; got != want {
		t.Errorf("plain, first update: %q, want %q", got, want)
	}
}
