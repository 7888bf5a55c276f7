package bench

import (
	"context"
	"fmt"
	"net/http"
)

// memCounters are the Go runtime's cumulative allocation counters of a
// server: bytes and objects allocated on the heap since it started
// (/metrics: go_memstats_alloc_bytes_total, go_memstats_mallocs_total).
// Read before and after the measured phase, their difference over the
// devices is what a device costs the garbage collector, whatever the
// machine's load: a deterministic figure where CPU time is not.
type memCounters struct{ bytes, objects float64 }

// readMemCounters reads a server's memCounters from its /metrics with c
// (any authenticated identity may read it). The read itself (a TLS
// handshake and the metrics' encoding) allocates some 100 KiB: nothing
// next to a measured phase of thousands of devices.
func readMemCounters(ctx context.Context, c *http.Client, url string) (memCounters, error) {
	v, err := scrape(ctx, c, url+"/metrics")
	if err != nil {
		return memCounters{}, fmt.Errorf("read the server's allocation counters: %w", err)
	}
	bytes, ok1 := v["go_memstats_alloc_bytes_total"]
	objects, ok2 := v["go_memstats_mallocs_total"]
	if !ok1 || !ok2 {
		return memCounters{}, fmt.Errorf("/metrics lacks go_memstats_alloc_bytes_total or go_memstats_mallocs_total (is the Go collector registered?)")
	}
	return memCounters{bytes: bytes, objects: objects}, nil
}
