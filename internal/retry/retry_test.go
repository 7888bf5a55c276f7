package retry

import (
	"context"
	"testing"
	"time"
)

func TestCap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		p    Policy
		n    int
		want time.Duration
	}{
		{"first", Policy{Initial: 50 * time.Millisecond, Max: 5 * time.Second}, 1, 50 * time.Millisecond},
		{"doubles", Policy{Initial: 50 * time.Millisecond, Max: 5 * time.Second}, 3, 200 * time.Millisecond},
		{"capped", Policy{Initial: 50 * time.Millisecond, Max: 5 * time.Second}, 10, 5 * time.Second},
		{"no overflow", Policy{Initial: time.Second, Max: time.Hour}, 200, time.Hour},
		{"zero", Policy{}, 5, 0},
	}
	for _, tc := range tests {
		if got := tc.p.Cap(tc.n); got != tc.want {
			t.Errorf("%s: Cap(%d) = %s, want %s", tc.name, tc.n, got, tc.want)
		}
	}
	if d := (Policy{Initial: time.Second}).Cap(200); d < time.Second {
		t.Errorf("Cap(200) without Max = %s: overflowed", d)
	}
	p := Policy{Initial: 10 * time.Millisecond, Max: 40 * time.Millisecond}
	for n := 1; n < 5; n++ {
		for range 200 {
			if d := p.Delay(n); d < 0 || d > p.Cap(n) {
				t.Fatalf("Delay(%d) = %s, outside [0, %s]", n, d, p.Cap(n))
			}
		}
	}
}

func TestRunLimits(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	t.Run("attempts", func(t *testing.T) {
		r := Policy{Initial: time.Millisecond, Attempts: 3}.Start(t0)
		for i := 1; i <= 2; i++ {
			if _, ok := r.Next(t0, 0); !ok {
				t.Fatalf("failure %d: no retry, want one (3 attempts)", i)
			}
		}
		if _, ok := r.Next(t0, 0); ok {
			t.Fatal("a 4th attempt was allowed, want at most 3")
		}
	})
	t.Run("budget", func(t *testing.T) {
		r := Policy{Initial: time.Second, Max: time.Second, Budget: 10 * time.Second}.Start(t0)
		if _, ok := r.Next(t0.Add(5*time.Second), 0); !ok {
			t.Fatal("no retry 5s into a 10s budget")
		}
		if _, ok := r.Next(t0.Add(10*time.Second+time.Millisecond), 0); ok {
			t.Fatal("retry allowed past the budget")
		}
	})
	t.Run("hint lengthens the wait and counts against the budget", func(t *testing.T) {
		r := Policy{Initial: time.Millisecond, Max: time.Millisecond, Budget: 10 * time.Second}.Start(t0)
		w, ok := r.Next(t0, 3*time.Second)
		if !ok || w != 3*time.Second {
			t.Fatalf("Next with a 3s hint = %s, %v; want 3s, true", w, ok)
		}
		if _, ok := r.Next(t0.Add(8*time.Second), 3*time.Second); ok {
			t.Fatal("a wait ending past the budget was allowed")
		}
	})
}

func TestSleep(t *testing.T) {
	t.Parallel()
	if err := Sleep(context.Background(), time.Microsecond); err != nil {
		t.Fatalf("Sleep = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, time.Hour); err != context.Canceled {
		t.Fatalf("Sleep on a cancelled context = %v, want context.Canceled", err)
	}
}
