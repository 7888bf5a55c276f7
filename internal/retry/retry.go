// Package retry is tacline's one retry policy: capped exponential backoff
// with full jitter, bounded by a number of attempts and by a time budget.
// The ledger's transaction retry (store), the register delivery worker
// (register) and the station client (factory) all wait by it, so a change
// of strategy is made here once.
//
// The promises:
//   - the wait after the n-th failed attempt is drawn uniformly from
//     [0, Cap(n)], Cap(n) = Initial·2^(n-1) capped at Max ("full jitter":
//     callers that failed together do not retry together);
//   - a Run never allows more than Attempts attempts, and never schedules an
//     attempt that would start later than Budget after the first one;
//   - a hint from the other side (an HTTP Retry-After) lengthens a wait,
//     never shortens it.
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy says how long to wait between attempts and when to give up. The
// zero Policy retries at once, without limit: set at least Initial and one
// of Attempts or Budget.
type Policy struct {
	// Initial bounds the first wait; each further wait's bound doubles.
	Initial time.Duration
	// Max bounds every wait.
	Max time.Duration
	// Attempts is the most attempts in all, the first included; 0 means no
	// limit (the budget decides).
	Attempts int
	// Budget is how long after the first attempt a new attempt may still
	// start; 0 means no limit (the attempts decide).
	Budget time.Duration
}

// Cap is the upper bound of the wait after the n-th failed attempt (n ≥ 1):
// Initial·2^(n-1), at most Max (Max 0: no bound).
func (p Policy) Cap(n int) time.Duration {
	d := p.Initial
	for i := 1; i < n; i++ {
		if p.Max > 0 && d >= p.Max {
			break
		}
		if d > (1<<62)/2 {
			break // doubling would overflow
		}
		d *= 2
	}
	if p.Max > 0 && d > p.Max {
		d = p.Max
	}
	return max(d, 0)
}

// Delay draws the wait after the n-th failed attempt from [0, Cap(n)].
func (p Policy) Delay(n int) time.Duration {
	c := p.Cap(n)
	if c <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(c) + 1))
}

// Run is one operation's sequence of attempts under a Policy. It is not
// safe for concurrent use.
type Run struct {
	p      Policy
	start  time.Time
	failed int
}

// Start begins a run whose first attempt starts at now.
func (p Policy) Start(now time.Time) *Run { return &Run{p: p, start: now} }

// Failures is the number of failed attempts recorded so far.
func (r *Run) Failures() int { return r.failed }

// Next records a failed attempt that ended at now and returns the wait
// before the next one: Delay, or hint when that is longer (a server's
// Retry-After). ok is false when the policy allows no further attempt: the
// attempts are spent or the next one would start past the budget.
func (r *Run) Next(now time.Time, hint time.Duration) (wait time.Duration, ok bool) {
	r.failed++
	if r.p.Attempts > 0 && r.failed >= r.p.Attempts {
		return 0, false
	}
	wait = max(r.p.Delay(r.failed), hint)
	if r.p.Budget > 0 && now.Add(wait).Sub(r.start) > r.p.Budget {
		return 0, false
	}
	return wait, true
}

// Sleep waits d or until ctx is done, and returns ctx's error in that case.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
