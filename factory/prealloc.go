package factory

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/imei"
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
			return failAll(ErrorCode(err), false)
		}
		if checkAllocation(resp, size, e.cfg.imeiCount, w.pools) != nil {
			return failAll(string(tacerr.VerificationFailed), true)
		}
		all.Devices = append(all.Devices, resp.Devices...)
	}
	// Again over all requests: no IMEI in two of them.
	if checkAllocation(all, n, e.cfg.imeiCount, w.pools) != nil {
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

// checkAllocation checks a pre-allocation: one group per device, each of
// valid 15-digit IMEIs inside the station's pools (and perDevice of them
// when asked), no IMEI twice.
func checkAllocation(resp *wire.AllocationResponse, devices, perDevice int, pools []PoolRange) error {
	if len(resp.Devices) != devices {
		return verifyErr(ErrIMEI, "devices", "the allocation has %d IMEI groups for %d devices", len(resp.Devices), devices)
	}
	seen := map[imei.IMEI]bool{}
	for i, g := range resp.Devices {
		if perDevice > 0 && len(g) != perDevice {
			return verifyErr(ErrIMEI, fmt.Sprintf("devices[%d]", i), "has %d IMEIs, %d asked for", len(g), perDevice)
		}
		ims, err := checkIMEIs(g, pools)
		if err != nil {
			return fmt.Errorf("devices[%d]: %w", i, err)
		}
		for _, m := range ims {
			if seen[m] {
				return verifyErr(ErrIMEI, fmt.Sprintf("devices[%d]", i), "IMEI %s is allocated to two devices", m)
			}
			seen[m] = true
		}
	}
	return nil
}

// sameIMEIs checks that a bound identity carries exactly the IMEIs of the
// group it was bound to (both already checked to be valid).
func sameIMEIs(got, want []string) error {
	norm := func(list []string) []string {
		out := make([]string, 0, len(list))
		for _, s := range list {
			if m, err := imei.Parse(s); err == nil {
				s = m.String()
			}
			out = append(out, s)
		}
		slices.Sort(out)
		return out
	}
	if !slices.Equal(norm(got), norm(want)) {
		return verifyErr(ErrIMEI, "imeis", "the device was bound to %v, the server returned %v", want, got)
	}
	return nil
}
