package console

import (
	"sync"
	"time"
)

// errLogEvery is how often the console logs one repeated error (same code
// and cause) at most: an overview open during an outage shows its problem
// at every refresh (5 s), and the log says it once a minute with how many
// repeats it left out.
const errLogEvery = time.Minute

// errLogMax bounds the errors the limiter remembers; past it, those not
// logged within errLogEvery are forgotten.
const errLogMax = 1024

// errLog decides which errors shown on pages are logged: the first of a
// code and cause, then at most one every errLogEvery.
type errLog struct {
	mu   sync.Mutex
	seen map[string]*errSeen
}

// errSeen is one code and cause: when its last line was logged, under
// which request id, and the repeats left out since.
type errSeen struct {
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
}

// admit records an error of key (its code and cause) shown under
// requestID at now and says whether to log it.
func (l *errLog) admit(key, requestID string, now time.Time) errLogged {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = map[string]*errSeen{}
	}
	s, ok := l.seen[key]
	if ok && now.Sub(s.at) < errLogEvery && !now.Before(s.at) {
		s.suppressed++
		s.lastID = requestID
		return errLogged{loggedAs: s.requestID}
	}
	if !ok {
		if len(l.seen) >= errLogMax {
			for k, o := range l.seen {
				if now.Sub(o.at) >= errLogEvery || now.Before(o.at) {
					delete(l.seen, k)
				}
			}
		}
		if len(l.seen) >= errLogMax {
			// Every remembered error was logged within the minute: log
			// this one without remembering it.
			return errLogged{log: true}
		}
		s = &errSeen{}
		l.seen[key] = s
	}
	out := errLogged{log: true, suppressed: s.suppressed, lastID: s.lastID}
	*s = errSeen{at: now, requestID: requestID}
	return out
}
