// Package progress is the one owner of progress reports of long commands
// (the prefill of a benchmark ledger, a ledger rebuild): the line that says
// how much is done, how fast and how long is left, and where it goes (one
// line rewritten in place on a terminal, plain lines elsewhere).
package progress

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Counter describes a task that counts units up to a known total.
type Counter struct {
	Task  string // what runs: "prefill", "rebuild"
	Unit  string // what is counted: "devices", "pages"
	Total int64
	// Also, when its Unit is set, adds a second rate in another unit
	// (Per of them for each counted unit: rows per device, MiB per page).
	Also Rate
}

// Rate is a second unit of a Counter's rate.
type Rate struct {
	Unit string
	Per  float64
}

// Line reports done of c.Total after elapsed:
//
//	prefill: 26000/300000 devices (8.7%), 1176 devices/s (22349 rows/s), 22s elapsed, ETA 3m52s
//
// The ETA assumes the rate so far holds; it is "unknown" before the first
// unit is done.
func (c Counter) Line(done int64, elapsed time.Duration) string {
	var b strings.Builder
	pct := 0.0
	if c.Total > 0 {
		pct = 100 * float64(done) / float64(c.Total)
	}
	fmt.Fprintf(&b, "%s: %d/%d %s (%.1f%%)", c.Task, done, c.Total, c.Unit, pct)
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(done) / s
	}
	fmt.Fprintf(&b, ", %.0f %s/s", rate, c.Unit)
	if c.Also.Unit != "" {
		fmt.Fprintf(&b, " (%.0f %s/s)", rate*c.Also.Per, c.Also.Unit)
	}
	fmt.Fprintf(&b, ", %s elapsed, ETA %s", elapsed.Truncate(time.Second), ETA(done, c.Total, elapsed))
	return b.String()
}

// ETA is the time left to reach total at the rate of done in elapsed,
// rounded to the second ("unknown" before anything is done).
func ETA(done, total int64, elapsed time.Duration) string {
	if done <= 0 || elapsed <= 0 {
		return "unknown"
	}
	if done >= total {
		return "0s"
	}
	rate := float64(done) / elapsed.Seconds()
	return (time.Duration(float64(total-done) / rate * float64(time.Second))).Round(time.Second).String()
}

// Printer writes progress lines to a writer. On a terminal (InPlace) each
// line replaces the one before it and every Update is shown; elsewhere
// (a log, a pipe) an Update is written as its own line at most once per
// Every, so a long task leaves a readable log.
type Printer struct {
	mu      sync.Mutex
	w       io.Writer
	inPlace bool
	every   time.Duration
	last    time.Time
	open    bool // an in-place line is on the screen, not ended
}

// NewPrinter returns a Printer on w; every applies to plain lines only.
func NewPrinter(w io.Writer, inPlace bool, every time.Duration) *Printer {
	return &Printer{w: w, inPlace: inPlace, every: every}
}

// Update shows line: in place on a terminal, else as a line when Every has
// passed since the last one written.
func (p *Printer) Update(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inPlace {
		fmt.Fprintf(p.w, "\r%s\x1b[K", line)
		p.open = true
		return
	}
	if now := time.Now(); p.last.IsZero() || now.Sub(p.last) >= p.every {
		p.last = now
		fmt.Fprintln(p.w, line)
	}
}

// Print shows line as a line of its own, always (a phase's start or end):
// on a terminal it replaces the line in place and ends it.
func (p *Printer) Print(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inPlace {
		fmt.Fprintf(p.w, "\r%s\x1b[K\n", line)
	} else {
		fmt.Fprintln(p.w, line)
	}
	p.open = false
	p.last = time.Now()
}

// End ends a line left in place on a terminal (before other output).
func (p *Printer) End() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.open {
		fmt.Fprintln(p.w)
		p.open = false
	}
}
