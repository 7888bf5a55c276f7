package wire

import (
	"fmt"
	"strings"

	"github.com/tacline/tacline/imei"
)

// Device ids: what registers hold as a device's identity (DIRBS
// device_id, the register API's device_id), made from tacline's device
// serial. Registers accept letters and digits only, and some fold case, so
// the mapping is built to survive both:
//
//   - A serial of upper-case letters and digits that does not start with
//     "Q" is its own id: SN0001 -> SN0001.
//   - Any other serial becomes "Q" followed by the serial with every byte
//     other than an upper-case letter or digit, and every "Q", written as
//     "Q" and two upper-case hex digits: COLL-X-1 -> QCOLLQ2DXQ2D1,
//     sn1 -> QQ73Q6E1, QA -> QQ51A.
//   - An IMEI voided before it had a device is reported under "QIMEI" and
//     its 14 digits, which no serial maps to. (The empty serial is "Q".)
//
// Ids hold only upper-case letters and digits, so comparing them with or
// without case is the same; two different serials never share an id
// (escaping is a prefix code, and ids of the first kind never start with
// "Q"); DeviceSerial reverses the mapping. A serial of at most 64 bytes
// (tacline's device serial rule) gives an id of at most MaxDeviceID
// characters.

// MaxDeviceID is the longest device id: a 64-byte serial escaped whole.
const MaxDeviceID = 1 + 3*64

// deviceIDEscape starts every escaped id and every escape inside one.
const deviceIDEscape = 'Q'

// voidedPrefix starts the id of an IMEI voided before it had a device.
const voidedPrefix = "QIMEI"

const hexDigits = "0123456789ABCDEF"

// plainIDByte reports whether c stands for itself in a device id.
func plainIDByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' && c != deviceIDEscape
}

// DeviceID returns the register device id of a device serial (see above).
func DeviceID(serial string) string {
	plain := serial != ""
	for i := 0; i < len(serial) && plain; i++ {
		plain = plainIDByte(serial[i])
	}
	if plain {
		return serial
	}
	b := make([]byte, 1, 1+3*len(serial))
	b[0] = deviceIDEscape
	for i := 0; i < len(serial); i++ {
		c := serial[i]
		if plainIDByte(c) {
			b = append(b, c)
			continue
		}
		b = append(b, deviceIDEscape, hexDigits[c>>4], hexDigits[c&15])
	}
	return string(b)
}

// DeviceIDOf returns the device id of an IMEI's event: DeviceID(serial),
// or VoidedDeviceID(m) when the IMEI has no device (serial "").
func DeviceIDOf(serial string, m imei.IMEI) string {
	if serial == "" {
		return VoidedDeviceID(m)
	}
	return DeviceID(serial)
}

// VoidedDeviceID returns the device id under which an IMEI voided before
// it had a device is reported: "QIMEI" and its 14 digits.
func VoidedDeviceID(m imei.IMEI) string {
	return voidedPrefix + m.Digits14()
}

// DeviceSerial returns the device serial a device id stands for: the
// inverse of DeviceID. Case is ignored (a register may have folded it). An
// id that DeviceID never returns (including a voided IMEI's, which names
// no device) is an error saying why.
func DeviceSerial(id string) (string, error) {
	id = asciiUpper(id)
	switch {
	case id == "":
		return "", fmt.Errorf("device id is empty")
	case id[0] != deviceIDEscape:
		for i := 0; i < len(id); i++ {
			if !plainIDByte(id[i]) {
				return "", fmt.Errorf("device id %q: %q at position %d is not a letter or digit", id, id[i], i+1)
			}
		}
		return id, nil
	case id == string(deviceIDEscape):
		return "", nil // the empty serial
	case len(id) == len(voidedPrefix)+14 && strings.HasPrefix(id, voidedPrefix) && strings.Trim(id[len(voidedPrefix):], "0123456789") == "":
		return "", fmt.Errorf("device id %q stands for an IMEI voided before it had a device, not for a device", id)
	}
	b := make([]byte, 0, len(id))
	plain := true
	for i := 1; i < len(id); i++ {
		c := id[i]
		switch {
		case plainIDByte(c):
			b = append(b, c)
			continue
		case c != deviceIDEscape:
			return "", fmt.Errorf("device id %q: %q at position %d is not a letter or digit", id, c, i+1)
		case i+2 >= len(id):
			return "", fmt.Errorf("device id %q: escape at position %d is not followed by two hex digits", id, i+1)
		}
		hi, lo := strings.IndexByte(hexDigits, id[i+1]), strings.IndexByte(hexDigits, id[i+2])
		if hi < 0 || lo < 0 {
			return "", fmt.Errorf("device id %q: escape at position %d is not followed by two hex digits", id, i+1)
		}
		e := byte(hi<<4 | lo)
		if plainIDByte(e) {
			return "", fmt.Errorf("device id %q: escape at position %d stands for %q, which is never escaped", id, i+1, e)
		}
		plain = false
		b = append(b, e)
		i += 2
	}
	if plain {
		// DeviceID gives this serial without the escape.
		return "", fmt.Errorf("device id %q is not one tacline writes: %q has no character to escape", id, b)
	}
	return string(b), nil
}

// asciiUpper upper-cases the ASCII letters of s and nothing else (a
// non-ASCII character stays and makes the id invalid).
func asciiUpper(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' {
			return r - 'a' + 'A'
		}
		return r
	}, s)
}
