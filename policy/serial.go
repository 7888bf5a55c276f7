package policy

import "github.com/tacline/tacline/tacerr"

// MaxDeviceSerial is the longest device serial: the certificate subject's
// serialNumber (RFC 5280 ub-serial-number).
const MaxDeviceSerial = 64

// CheckDeviceSerial is the one device-serial rule. The API, the
// provisioner (before anything is reserved), the certificate profile and
// the station client (package factory) all call it, so a serial one of
// them accepts is never refused by another later.
//
// A serial is 1 to 64 characters: letters, digits, '.', ':' and '-',
// starting with a letter or a digit. That is what every place a serial goes
// can carry unchanged: a PrintableString subject serialNumber and
// hwSerialNum, a URL path segment (/v1/devices/{serial}), a file name on a
// station, a DIRBS device_id.
func CheckDeviceSerial(s string) error {
	switch {
	case s == "":
		return tacerr.Field(tacerr.InvalidInput, "device_serial", "is required")
	case len(s) > MaxDeviceSerial:
		return tacerr.Field(tacerr.InvalidInput, "device_serial", "is %d characters long, at most %d allowed", len(s), MaxDeviceSerial)
	case !alnum(s[0]):
		return tacerr.Field(tacerr.InvalidInput, "device_serial", "must start with a letter or a digit, not %q", s[0])
	}
	for i := 1; i < len(s); i++ {
		if !DeviceSerialChar(s[i]) {
			return tacerr.Field(tacerr.InvalidInput, "device_serial", "character %d (%q) is not allowed: use letters, digits, '.', ':' and '-'", i+1, s[i])
		}
	}
	return nil
}

// DeviceSerialChar reports whether c may appear in a device serial.
func DeviceSerialChar(c byte) bool {
	return alnum(c) || c == '.' || c == ':' || c == '-'
}

func alnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
