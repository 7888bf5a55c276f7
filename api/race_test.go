//go:build race

package api

// raceEnabled: the race detector's sync.Pool drops a quarter of what is
// put back (to find code that relies on getting it again), so a test of
// what a pooled path allocates cannot hold under it.
const raceEnabled = true
