package bench

import (
	"math"
	"testing"
)

func TestLinearSlope(t *testing.T) {
	for _, tc := range []struct {
		name        string
		xs, ys      []float64
		slope, mean float64
	}{
		{"flat", []float64{0, 1, 2, 3}, []float64{5, 5, 5, 5}, 0, 5},
		{"growing", []float64{0, 1, 2, 3}, []float64{1, 3, 5, 7}, 2, 4},
		{"noisy falling", []float64{0, 1, 2}, []float64{10, 9, 5}, -2.5, 8},
		{"one point", []float64{1}, []float64{3}, 0, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, m := LinearSlope(tc.xs, tc.ys)
			if math.Abs(k-tc.slope) > 1e-9 || math.Abs(m-tc.mean) > 1e-9 {
				t.Fatalf("LinearSlope = %v, %v; want %v, %v", k, m, tc.slope, tc.mean)
			}
		})
	}
}

// The first sample (start-up) is left out; drift is slope × span / mean.
func TestSoakSlopes(t *testing.T) {
	samples := []SoakSample{{Minutes: 1, RSSMiB: 500}, {Minutes: 2, RSSMiB: 100}, {Minutes: 32, RSSMiB: 110}}
	sl, drift := slopes(samples)
	if math.Abs(sl["rss_mib"]-20) > 1e-9 {
		t.Fatalf("rss slope = %v/h, want 20/h", sl["rss_mib"])
	}
	if math.Abs(drift["rss_mib"]-10.0/105) > 1e-9 {
		t.Fatalf("rss drift = %v, want %v", drift["rss_mib"], 10.0/105)
	}
}
