package factory

// The station client's retries follow internal/retry's policy (the one
// retry policy type of tacline); this file reads the server's hint.

import (
	"time"

	"github.com/tacline/tacline/internal/retry"
)

// maxRetryAfter bounds what a Retry-After header can make a station wait.
const maxRetryAfter = 5 * time.Minute

// ParseRetryAfter reads an HTTP Retry-After value (RFC 9110 §10.2.3): a
// number of seconds or an HTTP date, relative to now. It returns 0 for an
// empty, malformed or past value and caps the result at five minutes.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	return retry.After(v, now, maxRetryAfter)
}
