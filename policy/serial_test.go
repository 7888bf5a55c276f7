package policy

import (
	"net/url"
	"strings"
	"testing"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/internal/der"
	"github.com/tacline/tacline/tacerr"
)

func TestCheckDeviceSerial(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		serial string
		ok     bool
	}{
		{"SN-0001", true},
		{"A", true},
		{"0", true},
		{"x.rev:2-1", true},
		{strings.Repeat("9", MaxDeviceSerial), true},
		{"", false},
		{strings.Repeat("9", MaxDeviceSerial+1), false},
		{"SN_1", false}, // passed the provisioner, refused by the profile after reservation
		{"A/B", false},  // passed provisioner and profile, refused by the station client
		{"a b", false},
		{"-SN", false},
		{".", false},
		{"..", false},
		{"x(1)", false},
		{"é", false},
		{"SN\x00", false},
	} {
		err := CheckDeviceSerial(tc.serial)
		if tc.ok != (err == nil) {
			t.Errorf("CheckDeviceSerial(%q) = %v, want ok %v", tc.serial, err, tc.ok)
		}
		if e, isErr := tacerr.As(err); err != nil && (!isErr || e.Code != tacerr.InvalidInput || e.Field != "device_serial") {
			t.Errorf("CheckDeviceSerial(%q) = %v, want invalid_input on device_serial", tc.serial, err)
		}
	}
}

// FuzzDeviceSerial: a serial the rule accepts is accepted by the
// certificate profile and fits every place a serial goes unchanged (a
// PrintableString, a URL path segment); a serial it refuses is refused by
// the profile too, so the profile never refuses after a reservation.
func FuzzDeviceSerial(f *testing.F) {
	for _, s := range []string{"SN-1", "SN_1", "A/B", "a b", "", ".", strings.Repeat("x", 65)} {
		f.Add(s)
	}
	m, err := imei.New(100100, 1)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ruleErr := CheckDeviceSerial(s)
		profErr := CheckDevice(Device{Serial: s, Manufacturer: "M", Model: "X", IMEIs: []imei.IMEI{m}})
		if (ruleErr == nil) != (profErr == nil) {
			t.Fatalf("serial %q: rule says %v, profile says %v", s, ruleErr, profErr)
		}
		if ruleErr == nil && (!der.PrintableString(s) || url.PathEscape(s) != s) {
			t.Fatalf("serial %q is accepted but is not a PrintableString or needs escaping in a path", s)
		}
	})
}
