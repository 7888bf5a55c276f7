package factory

import (
	"testing"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/tacerr"
)

func TestVerifyAllocation(t *testing.T) {
	t.Parallel()
	pools := []PoolRange{{TAC: tacA, SNREnd: 100}}
	im := func(snr uint32) string { return imei.MustNew(tacA, snr).String() }
	tests := []struct {
		name   string
		groups [][]string
		field  string
	}{
		{name: "good", groups: [][]string{{im(1), im(2)}, {im(3), im(4)}}},
		{name: "one group short", groups: [][]string{{im(1), im(2)}}, field: "devices"},
		{name: "group of one", groups: [][]string{{im(1)}, {im(3), im(4)}}, field: "devices[0]"},
		{name: "IMEI in two groups", groups: [][]string{{im(1), im(2)}, {im(2), im(4)}}, field: "devices[1]"},
		{name: "outside the pool", groups: [][]string{{im(1), im(2)}, {im(3), im(400)}}, field: "imeis[1]"},
	}
	for _, tc := range tests {
		err := VerifyAllocation(&wire.AllocationResponse{Devices: tc.groups}, 2, 2, pools)
		if tc.field == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		e, ok := tacerr.As(err)
		if !ok || e.Code != tacerr.VerificationFailed || e.Field != tc.field {
			t.Errorf("%s: err = %v, want verification_failed on %s", tc.name, err, tc.field)
		}
	}
}
