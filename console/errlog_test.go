package console

import (
	"bytes"
	"encoding/json"
	"errors"
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
	var logBuf bytes.Buffer
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	c := &Console{cfg: Config{Log: slog.New(slog.NewJSONHandler(&logBuf, nil)), Now: func() time.Time { return now }}}
	pages, err := parsePages(English())
	if err != nil {
		t.Fatal(err)
	}
	outage := func() error {
		return tacerr.Wrap(tacerr.Unavailable, errors.New("dial tcp 127.0.0.1:5432: connect: connection refused"), "read pools")
	}
	show := func(err error) errorNote {
		r := httptest.NewRequest("GET", "/console/", nil)
		return c.note(r, &page{}, err)
	}
	lines := func() []map[string]any {
		var out []map[string]any
		for l := range strings.Lines(logBuf.String()) {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatal(err)
			}
			out = append(out, m)
		}
		return out
	}

	first := show(outage())
	var last errorNote
	ids := map[string]bool{first.RequestID: true}
	for i := 1; i < 12; i++ { // 5 s refreshes up to 55 s
		now = now.Add(5 * time.Second)
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
	now = now.Add(5 * time.Second)
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
