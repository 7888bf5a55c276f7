package console

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// errLogEvery is how often the console logs one repeated error (same code
// and cause) at most: an overview open during an outage shows its problem
// at every refresh (5 s), and the log says it once a minute with how many
// repeats it left out.
const errLogEvery = time.Minute

// errLogMax bounds the errors the limiter remembers; past it, those not
// logged within errLogEvery are forgotten (their repeats left out logged
// first).
const errLogMax = 1024

// errSweepEvery is how often Run closes the windows of errors not shown
// again (a window's count reaches the log at most this long after its
// minute).
const errSweepEvery = 10 * time.Second

// errLog decides which errors shown on pages are logged: the first of a
// code and cause, then at most one every errLogEvery. The repeats left out
// of a window reach the log either on the error's next line (shown again a
// minute or more later) or, when it is not shown again, as a line of their
// own once the window has closed (sweep), when the limiter forgets the
// error to make room, or when the console stops.
type errLog struct {
	mu   sync.Mutex
	seen map[string]*errSeen
}

// errShown is one error shown on a page, as the limiter keeps it.
type errShown struct {
	code, cause string
	level       slog.Level
}

func (e errShown) key() string { return e.code + "\x00" + e.cause }

// errSeen is one code and cause: when its last line was logged, under
// which request id, and the repeats left out since.
type errSeen struct {
	errShown
	at         time.Time
	requestID  string
	suppressed int
	lastID     string // request id of the last repeat left out
}

// errLogged says what to do with an error shown under requestID at now.
type errLogged struct {
	log bool
	// loggedAs (log false) is the request id of the line that holds the
	// same error in full.
	loggedAs string
	// suppressed and lastID (log true): repeats left out since the line
	// before, and the last of them.
	suppressed int
	lastID     string
	// closed are other errors' repeats left out whose windows the limiter
	// closed to make room: each is logged as a line of its own.
	closed []errRepeats
}

// errRepeats are the repeats of an error left out of the log since its
// line under loggedAs, when no later line of it will count them.
type errRepeats struct {
	errShown
	loggedAs   string
	suppressed int
	lastID     string
}

// expired says whether s's window is closed at now (a clock gone back
// closes it too).
func (s *errSeen) expired(now time.Time) bool {
	return now.Sub(s.at) >= errLogEvery || now.Before(s.at)
}

// repeats returns s's repeats left out, if any, to log on their own.
func (s *errSeen) repeats(out []errRepeats) []errRepeats {
	if s.suppressed == 0 {
		return out
	}
	return append(out, errRepeats{errShown: s.errShown, loggedAs: s.requestID, suppressed: s.suppressed, lastID: s.lastID})
}

// admit records e shown under requestID at now and says whether to log it.
func (l *errLog) admit(e errShown, requestID string, now time.Time) errLogged {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = map[string]*errSeen{}
	}
	key := e.key()
	s, ok := l.seen[key]
	if ok && !s.expired(now) {
		s.suppressed++
		s.lastID = requestID
		return errLogged{loggedAs: s.requestID}
	}
	var closed []errRepeats
	if !ok {
		if len(l.seen) >= errLogMax {
			closed = l.sweepLocked(now, false)
		}
		if len(l.seen) >= errLogMax {
			// Every remembered error was logged within the minute: log
			// this one without remembering it.
			return errLogged{log: true, closed: closed}
		}
		s = &errSeen{}
		l.seen[key] = s
	}
	out := errLogged{log: true, suppressed: s.suppressed, lastID: s.lastID, closed: closed}
	*s = errSeen{errShown: e, at: now, requestID: requestID}
	return out
}

// sweep forgets the errors whose window is closed at now (all: every
// error, the console stopping) and returns the repeats they left out.
func (l *errLog) sweep(now time.Time, all bool) []errRepeats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sweepLocked(now, all)
}

func (l *errLog) sweepLocked(now time.Time, all bool) []errRepeats {
	var out []errRepeats
	for k, s := range l.seen {
		if all || s.expired(now) {
			out = s.repeats(out)
			delete(l.seen, k)
		}
	}
	return out
}

// logRepeats logs repeats left out whose count no later line carries.
func (c *Console) logRepeats(ctx context.Context, rs []errRepeats) {
	for _, r := range rs {
		c.cfg.Log.Log(ctx, r.level, "console: error repeats left out", "request_id", r.loggedAs, "code", r.code, "err", r.cause,
			"repeats_suppressed", r.suppressed, "last_suppressed_request_id", r.lastID)
	}
}

// sweepErrors logs the repeats left out of the errors whose window is
// closed now (all: of every error) and forgets those errors.
func (c *Console) sweepErrors(ctx context.Context, all bool) {
	c.logRepeats(ctx, c.errs.sweep(c.cfg.Now(), all))
}

// Run logs, every errSweepEvery until ctx ends, the repeats left out of
// errors not shown again since their window closed, and when ctx ends
// those of every error (`tacline serve` runs it beside the API).
func (c *Console) Run(ctx context.Context) {
	t := time.NewTicker(errSweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			c.sweepErrors(context.WithoutCancel(ctx), true)
			return
		case <-t.C:
			c.sweepErrors(ctx, false)
		}
	}
}
