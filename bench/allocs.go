package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/metrics", nil)
	if err != nil {
		return memCounters{}, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return memCounters{}, fmt.Errorf("read the server's allocation counters: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return memCounters{}, fmt.Errorf("read the server's allocation counters: GET /metrics: %s", resp.Status)
	}
	return parseMemCounters(bufio.NewReader(resp.Body))
}

// parseMemCounters takes the two counters from Prometheus' text format.
func parseMemCounters(r *bufio.Reader) (memCounters, error) {
	var m memCounters
	found := 0
	for {
		line, err := r.ReadString('\n')
		name, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if ok && (name == "go_memstats_alloc_bytes_total" || name == "go_memstats_mallocs_total") {
			f, perr := strconv.ParseFloat(v, 64)
			if perr != nil {
				return m, fmt.Errorf("/metrics: %s: %w", name, perr)
			}
			if name == "go_memstats_alloc_bytes_total" {
				m.bytes = f
			} else {
				m.objects = f
			}
			found++
		}
		if err != nil {
			break
		}
	}
	if found != 2 {
		return m, fmt.Errorf("/metrics lacks go_memstats_alloc_bytes_total or go_memstats_mallocs_total (is the Go collector registered?)")
	}
	return m, nil
}
