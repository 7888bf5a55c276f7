package bench

import "testing"

func TestParseHostCPU(t *testing.T) {
	a := parseHostCPU("cpu  100 5 50 800 10 1 4 30 7 0")
	b := parseHostCPU("cpu  160 5 70 900 10 1 4 90 9 0")
	if !a.ok || !b.ok || a.total != 1000 || a.steal != 30 {
		t.Fatalf("parsed %+v and %+v, want totals of the eight fields (guest not added again) and steal 30", a, b)
	}
	if got := stealShare(a, b); got != 60.0/240 {
		t.Fatalf("steal share %v, want 60 of 240 ticks", got)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8", "cpu 1 2 3", "cpu 1 2 3 4 5 6 7 x"} {
		if h := parseHostCPU(bad); h.ok {
			t.Errorf("parseHostCPU(%q) = %+v, want not ok", bad, h)
		}
	}
	if got := stealShare(a, hostCPU{}); got != 0 {
		t.Fatalf("steal share with a failed reading: %v, want 0", got)
	}
	if h := readHostCPU(); !h.ok || h.total == 0 {
		t.Fatalf("this machine's /proc/stat: %+v", h)
	}
}
