package bench

import (
	"strings"
	"testing"
)

func TestParseMetrics(t *testing.T) {
	text := `# HELP go_memstats_alloc_bytes Number of bytes allocated in heap and currently in use.
go_memstats_alloc_bytes 1.2e+07
# HELP go_memstats_alloc_bytes_total Total number of bytes allocated in heap until now, even if released already.
# TYPE go_memstats_alloc_bytes_total counter
go_memstats_alloc_bytes_total 5.021934e+08
go_memstats_mallocs 3
go_memstats_mallocs_total 8.6e+06
`
	m, err := parseSamples(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if m["go_memstats_alloc_bytes_total"] != 5.021934e+08 || m["go_memstats_mallocs_total"] != 8.6e+06 {
		t.Fatalf("got %+v, want bytes 5.021934e+08 (not go_memstats_alloc_bytes) and objects 8.6e+06", m)
	}
	if m, _ := parseSamples(strings.NewReader(`tacline_x{a="b"} 1` + "\n")); len(m) != 0 {
		t.Fatalf("a labelled sample was taken: %v", m)
	}
}

// TestServerCountersDelta: the measured phase's figures are the counters'
// differences summed over the servers, and a histogram's mean is its sum
// over its count (0 when it saw nothing).
func TestServerCountersDelta(t *testing.T) {
	before := serverCounters{cBatch + "_sum": 1.0, cBatch + "_count": 10, cMembers: 30}
	after := serverCounters{cBatch + "_sum": 1.5, cBatch + "_count": 110, cMembers: 330}
	sum := serverCounters{}
	sum.addDelta(after, before)
	sum.addDelta(after, before)
	if got := sum.mean(cBatch); got != 1.0/200 {
		t.Fatalf("mean batch %v s, want 0.005 (1 s over 200 batches)", got)
	}
	if sum[cMembers] != 600 {
		t.Fatalf("members %v, want 600", sum[cMembers])
	}
	if got := sum.mean(cQueue); got != 0 {
		t.Fatalf("mean of an empty histogram %v, want 0", got)
	}
}
