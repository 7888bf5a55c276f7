package bench

import (
	"context"
	"fmt"
	"net/http"
	"strings"
)

// serverCounters are cumulative counters of a server read from its
// /metrics, before and after the measured phase; their differences cover
// that phase:
//   - the Go runtime's allocation counters (bytes and objects allocated on
//     the heap since it started): over the devices, what a device costs the
//     garbage collector, whatever the machine's load, a deterministic
//     figure where CPU time is not;
//   - the sums and counts of the ledger's and the HSM's histograms: where a
//     request's time goes (the ledger's queue and batches, the signature).
type serverCounters map[string]float64

// Counter names, as /metrics spells them.
const (
	cAllocBytes   = "go_memstats_alloc_bytes_total"
	cAllocObjects = "go_memstats_mallocs_total"
	cQueue        = "tacline_ledger_queue_seconds"
	cBatch        = "tacline_ledger_batch_seconds"
	cMembers      = "tacline_ledger_batch_members_total"
	cSign         = "tacline_hsm_sign_duration_seconds"
	// cProcs is a gauge, the server's GOMAXPROCS (read, not added up).
	cProcs = "go_sched_gomaxprocs_threads"
)

// counterNames are the samples serverCounters keeps: a histogram's by its
// _sum and _count.
var counterNames = []string{cAllocBytes, cAllocObjects, cQueue + "_sum", cQueue + "_count",
	cBatch + "_sum", cBatch + "_count", cMembers, cSign + "_sum", cSign + "_count", cProcs}

// readServerCounters reads a server's serverCounters from its /metrics
// with c (any authenticated identity may read it). The read itself (a TLS
// handshake and the metrics' encoding) allocates some 100 KiB: nothing next
// to a measured phase of thousands of devices.
func readServerCounters(ctx context.Context, c *http.Client, url string) (serverCounters, error) {
	v, err := scrape(ctx, c, url+"/metrics")
	if err != nil {
		return nil, fmt.Errorf("read the server's counters: %w", err)
	}
	out := serverCounters{}
	var missing []string
	for _, n := range counterNames {
		x, ok := v[n]
		if !ok {
			missing = append(missing, n)
		}
		out[n] = x
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("/metrics lacks %s (a server older than this bench?)", strings.Join(missing, ", "))
	}
	return out, nil
}

// addDelta adds after's counters minus before's to c.
func (c serverCounters) addDelta(after, before serverCounters) {
	for _, n := range counterNames {
		c[n] += after[n] - before[n]
	}
}

// mean is a histogram's mean over the phase (its sum over its count), 0
// when it observed nothing.
func (c serverCounters) mean(histogram string) float64 {
	if n := c[histogram+"_count"]; n > 0 {
		return c[histogram+"_sum"] / n
	}
	return 0
}
