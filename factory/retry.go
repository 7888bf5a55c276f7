package factory

// The station client's retries follow internal/retry's policy (the one
// retry policy type of tacline); this file reads the server's hint.

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxRetryAfter bounds what a Retry-After header can make a station wait.
const maxRetryAfter = 5 * time.Minute

// ParseRetryAfter reads an HTTP Retry-After value (RFC 9110 §10.2.3): a
// number of seconds or an HTTP date, relative to now. It returns 0 for an
// empty, malformed or past value and caps the result at five minutes.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseUint(v, 10, 64); err == nil || isAllDigits(v) {
		if err != nil || secs > uint64(maxRetryAfter/time.Second) {
			return maxRetryAfter // more digits than fit: a very long wait
		}
		return time.Duration(secs) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	d := t.Sub(now)
	if d <= 0 {
		return 0
	}
	return min(d, maxRetryAfter)
}

func isAllDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
