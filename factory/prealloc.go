package factory

import (
	"fmt"
	"slices"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/imei"
)

// VerifyAllocation checks a pre-allocation: one group per device, each of
// valid 15-digit IMEIs inside the station's pools (and perDevice of them
// when asked), no IMEI twice.
func VerifyAllocation(resp *wire.AllocationResponse, devices, perDevice int, pools []PoolRange) error {
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

// VerifyBinding checks that a bound identity carries exactly the IMEIs of the
// group it was bound to (both already checked to be valid).
func VerifyBinding(got, want []string) error {
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
