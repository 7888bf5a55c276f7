package retry

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// After reads an HTTP Retry-After value (RFC 9110 §10.2.3): a number of
// seconds or an HTTP date, relative to now. It returns 0 for an empty,
// malformed or past value and caps the result at limit (a value with more
// digits than fit is a very long wait: limit).
func After(v string, now time.Time, limit time.Duration) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseUint(v, 10, 64); err == nil || isAllDigits(v) {
		if err != nil || secs > uint64(limit/time.Second) {
			return limit
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
	return min(d, limit)
}

func isAllDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
