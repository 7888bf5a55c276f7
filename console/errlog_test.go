package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/tacerr"
)

// TestRepeatedErrorLoggedOncePerMinute: an overview refreshed every 5 s
// during an outage shows its problem at every refresh, each under its own
// request id, but the log holds it once a minute: the repeats' notes name
// the request id of the line that holds it (and the page says so), and
// the next line, a minute later, counts the repeats left out and names the
// last of them. Another cause, or another code, is logged at once.
func TestRepeatedErrorLoggedOncePerMinute(t *testing.T) {
	el := newErrLogTest(t)
	now, logBuf, show, lines, outage := el.now, el.log, el.show, el.lines, outageErr
	pages, err := parsePages(English())
	if err != nil {
		t.Fatal(err)
	}

	first := show(outage())
	var last errorNote
	ids := map[string]bool{first.RequestID: true}
	for i := 1; i < 12; i++ { // 5 s refreshes up to 55 s
		*now = now.Add(5 * time.Second)
		last = show(outage())
		if last.LoggedAs != first.RequestID || ids[last.RequestID] || last.Code != "unavailable" {
			t.Fatalf("repeat %d: note %+v, want its own request id and LoggedAs %s", i, last, first.RequestID)
		}
		ids[last.RequestID] = true
	}
	if ls := lines(); len(ls) != 1 || ls[0]["request_id"] != first.RequestID || ls[0]["repeats_suppressed"] != nil {
		t.Fatalf("log after a minute of refreshes:\n%s", logBuf.String())
	}
	var page bytes.Buffer
	if err := pages["overview"].ExecuteTemplate(&page, "errnote", last); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(page.String(), "request id "+last.RequestID) || !strings.Contains(page.String(), "under request id "+first.RequestID) {
		t.Fatalf("the page's reference %q names neither its id nor the logged one", page.String())
	}

	// Another cause and another code are logged at once.
	show(tacerr.Wrap(tacerr.Unavailable, errors.New("database is locked"), "read pools"))
	show(tacerr.Wrap(tacerr.HSMUnavailable, errors.New("dial tcp 127.0.0.1:5432: connect: connection refused"), "read pools"))
	if ls := lines(); len(ls) != 3 {
		t.Fatalf("other causes and codes not logged:\n%s", logBuf.String())
	}

	// A minute after the first line: logged again, with the count.
	*now = now.Add(5 * time.Second)
	again := show(outage())
	ls := lines()
	if again.LoggedAs != "" || len(ls) != 4 || ls[3]["request_id"] != again.RequestID || ls[3]["repeats_suppressed"] != float64(11) ||
		ls[3]["last_suppressed_request_id"] != last.RequestID {
		t.Fatalf("a minute later: note %+v, log:\n%s", again, logBuf.String())
	}
	page.Reset()
	if err := pages["overview"].ExecuteTemplate(&page, "errnote", again); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(page.String(), "under request id") {
		t.Fatalf("a logged note's reference %q names another id", page.String())
	}
}

// errLogTest is a console whose log is JSON in a buffer and whose clock
// the test moves.
type errLogTest struct {
	t   *testing.T
	c   *Console
	now *time.Time
	log *bytes.Buffer
}

func newErrLogTest(t *testing.T) *errLogTest {
	el := &errLogTest{t: t, log: &bytes.Buffer{}, now: new(time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC))}
	el.c = &Console{cfg: Config{Log: slog.New(slog.NewJSONHandler(el.log, nil)), Now: func() time.Time { return *el.now }}}
	return el
}

// show shows err on a page and returns the page's note.
func (el *errLogTest) show(err error) errorNote {
	r := httptest.NewRequest("GET", "/console/", nil)
	return el.c.note(r, &page{}, err)
}

// lines returns the log's lines.
func (el *errLogTest) lines() []map[string]any {
	var out []map[string]any
	for l := range strings.Lines(el.log.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			el.t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func outageErr() error {
	return tacerr.Wrap(tacerr.Unavailable, errors.New("dial tcp 127.0.0.1:5432: connect: connection refused"), "read pools")
}

// repeats shows err, then n repeats 5 s apart, and returns the first
// note and the last repeat's.
func (el *errLogTest) repeats(err error, n int) (first, last errorNote) {
	first = el.show(err)
	for range n {
		*el.now = el.now.Add(5 * time.Second)
		last = el.show(err)
	}
	return first, last
}

// wantRepeatsLine fails unless the log's line back lines from the end
// (0: the last) counts n repeats of the error logged under first, the
// last of them under last.
func (el *errLogTest) wantRepeatsLine(what string, back int, first, last errorNote, n int) {
	el.t.Helper()
	ls := el.lines()
	l := ls[len(ls)-1-back]
	if l["msg"] != "console: error repeats left out" || l["request_id"] != first.RequestID || l["code"] != first.Code ||
		l["repeats_suppressed"] != float64(n) || l["last_suppressed_request_id"] != last.RequestID || l["level"] != "ERROR" {
		el.t.Fatalf("%s: want a line counting %d repeats of %s, last %s; log:\n%s", what, n, first.RequestID, last.RequestID, el.log)
	}
}

// TestErrorRepeatsLoggedWhenNotShownAgain: an error repeated within its
// minute and then never shown again still has its repeats counted in the
// log: by the periodic sweep once the minute is over (not before), and by
// the console stopping (Run's end, Close) when the minute is still open.
func TestErrorRepeatsLoggedWhenNotShownAgain(t *testing.T) {
	el := newErrLogTest(t)
	first, last := el.repeats(outageErr(), 3)
	el.c.sweepErrors(t.Context(), false) // 15 s after the line: the window is open
	if ls := el.lines(); len(ls) != 1 {
		t.Fatalf("the sweep within the minute logged:\n%s", el.log)
	}
	*el.now = el.now.Add(45 * time.Second)
	el.c.sweepErrors(t.Context(), false)
	el.wantRepeatsLine("the sweep after the minute", 0, first, last, 3)
	el.c.sweepErrors(t.Context(), false)
	if err := el.c.Close(); err != nil {
		t.Fatal(err)
	}
	if ls := el.lines(); len(ls) != 2 {
		t.Fatalf("repeats logged twice:\n%s", el.log)
	}
	// Shown again later: a line of its own, with no count.
	again := el.show(outageErr())
	if ls := el.lines(); len(ls) != 3 || ls[2]["request_id"] != again.RequestID || ls[2]["repeats_suppressed"] != nil {
		t.Fatalf("shown again after the count was logged:\n%s", el.log)
	}

	// The console stopping within the minute: Close counts the repeats.
	el = newErrLogTest(t)
	first, last = el.repeats(outageErr(), 2)
	if err := el.c.Close(); err != nil {
		t.Fatal(err)
	}
	el.wantRepeatsLine("Close", 0, first, last, 2)

	// Run's end counts them too.
	el = newErrLogTest(t)
	first, last = el.repeats(outageErr(), 4)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	el.c.Run(ctx)
	el.wantRepeatsLine("Run's end", 0, first, last, 4)
}

// TestErrorRepeatsLoggedOnEviction: with errLogMax errors remembered, a
// new one makes the limiter forget those whose minute is over (here the
// first, the others logged 25 s after it); the repeats it left out are
// logged then, not lost.
func TestErrorRepeatsLoggedOnEviction(t *testing.T) {
	el := newErrLogTest(t)
	first, last := el.repeats(outageErr(), 5)
	for i := 1; i < errLogMax; i++ {
		el.show(tacerr.Wrap(tacerr.Unavailable, fmt.Errorf("cause %d", i), "read pools"))
	}
	*el.now = el.now.Add(35 * time.Second) // a minute after the first line
	el.show(tacerr.Wrap(tacerr.Unavailable, errors.New("one more cause"), "read pools"))
	ls := el.lines()
	if n := len(ls); n != errLogMax+2 {
		t.Fatalf("%d lines, want %d (every cause, one more, the count)", n, errLogMax+2)
	}
	el.wantRepeatsLine("eviction", 1, first, last, 5) // before the new error's line
}
