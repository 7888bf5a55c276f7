package sim

import (
	"context"
	"strconv"
	"strings"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/tacerr"
)

// allocate reserves the IMEI groups of all the worker's devices and checks
// them, in requests of at most wire.MaxAllocationDevices devices each (the
// server refuses larger ones). On failure every device of the station is
// recorded as failed (with the server's code, or verification_failed for a
// bad allocation) and false is returned; groups of the requests that did
// succeed stay reserved to the station, as a failed bind leaves them.
func (e *engine) allocate(ctx context.Context, w *worker) bool {
	n := e.cfg.devicesPerStation
	failAll := func(code string, verification bool) bool {
		for range n {
			e.record(0, code, verification)
		}
		return false
	}
	all := &wire.AllocationResponse{}
	for k, size := range allocationChunks(n) {
		id := "alloc-" + strings.TrimSuffix(w.prefix, "-")
		if k > 0 {
			id += "-" + strconv.Itoa(k+1) // the first keeps the one-request id
		}
		resp, err := w.client.Allocate(ctx, wire.AllocationRequest{
			RequestID: id, Pool: w.allocPool, Count: size, IMEIsPerDevice: e.cfg.imeiCount,
		})
		if err != nil {
			if ctx.Err() != nil {
				return false
			}
			return failAll(factory.ErrorCode(err), false)
		}
		if factory.VerifyAllocation(resp, size, e.cfg.imeiCount, w.pools) != nil {
			return failAll(string(tacerr.VerificationFailed), true)
		}
		all.Devices = append(all.Devices, resp.Devices...)
	}
	// Again over all requests: no IMEI in two of them.
	if factory.VerifyAllocation(all, n, e.cfg.imeiCount, w.pools) != nil {
		return failAll(string(tacerr.VerificationFailed), true)
	}
	w.groups = all.Devices
	return true
}

// allocationChunks splits n devices into request sizes of at most
// wire.MaxAllocationDevices.
func allocationChunks(n int) []int {
	var out []int
	for n > 0 {
		c := min(n, wire.MaxAllocationDevices)
		out = append(out, c)
		n -= c
	}
	return out
}
