// Package imei owns the International Mobile station Equipment Identity as a
// value: parsing, normalisation, the Luhn check digit, the TAC and SNR parts,
// the IMEISV form and the RFC 7254 URN. It does no I/O and holds no state.
//
// An IMEI (3GPP TS 23.003 §6.2.1) is a Type Allocation Code (TAC, 8 digits,
// whose first 2 digits are the reporting-body identifier, GSMA TS.06), a
// serial number (SNR, 6 digits) and a check digit (Luhn over the 14 leading
// digits, TS 23.003 Annex B). The IMEISV (§6.2.2) replaces the check digit
// with a 2-digit software version number (SVN). One TAC therefore holds
// exactly 1,000,000 serial numbers.
//
// The package promises:
//
//   - [IMEI] is a small comparable value (usable as a map key); the check
//     digit is never stored, it is always computed, so two values for the
//     same TAC and SNR are equal whatever form they were parsed from.
//   - [Parse] and [ParseBytes] accept 14 digits (the check digit is
//     computed), 15 digits (the check digit must be right) and 16 digits
//     (an IMEISV; the SVN is dropped, [ParseSV] returns it), with single
//     spaces or hyphens between digits. Anything else is an error of code
//     tacerr.InvalidIMEI whose message names the problem and, for a bad
//     character, its 1-based position.
//   - [ParseBytes] does not allocate when the input is valid: it is meant for
//     reconciliation runs over tens of millions of lines.
//   - Every accepted value round-trips through [IMEI.String],
//     [IMEI.Digits14] and [IMEI.URN]/[ParseURN].
package imei

import (
	"github.com/tacline/tacline/tacerr"
)

// Limits of the parts of an IMEI.
const (
	MaxTAC = 99_999_999 // largest 8-digit TAC
	MaxSNR = 999_999    // largest 6-digit serial number
	// SNRsPerTAC is the number of serial numbers one TAC holds.
	SNRsPerTAC = MaxSNR + 1
	// MaxPerDevice is the most IMEIs one device carries (one per SIM
	// slot): registers accept 1 to 5 per device (a DRS row holds 5). The
	// one owner of the bound; the ledger's schema repeats it in the CHECKs
	// of tacs.imeis_per_device and reservations.per_device, which
	// store's TestSchemaPerDeviceBound holds to this value.
	MaxPerDevice = 5
	// MaxSVN is the largest software version number an IMEISV may carry
	// when tacline builds one; 99 is reserved (TS 23.003 §6.2.2).
	MaxSVN = 98
	// TestReportingBody is the reporting-body identifier (first two TAC
	// digits) that GSMA TS.06 keeps for test IMEIs; no manufacturer is ever
	// allocated a TAC under it. tacline's test data and demo use it.
	TestReportingBody = 0
)

// IMEI is one equipment identity: a TAC and a serial number. The zero value
// is TAC 00000000, SNR 000000 (a test IMEI, valid but never allocated by
// tacline). Construct values with [Parse], [ParseBytes], [ParseURN] or [New].
type IMEI struct {
	tac uint32
	snr uint32
}

// New returns the IMEI with the given TAC and serial number.
func New(tac, snr uint32) (IMEI, error) {
	if tac > MaxTAC {
		return IMEI{}, tacerr.Field(tacerr.InvalidIMEI, "tac", "TAC %d has more than 8 digits", tac)
	}
	if snr > MaxSNR {
		return IMEI{}, tacerr.Field(tacerr.InvalidIMEI, "snr", "serial number %d has more than 6 digits", snr)
	}
	return IMEI{tac: tac, snr: snr}, nil
}

// FromUint64 returns the IMEI whose 14-digit form (see [IMEI.Uint64]) is n.
func FromUint64(n uint64) (IMEI, error) {
	if n > MaxTAC*SNRsPerTAC+MaxSNR {
		return IMEI{}, tacerr.New(tacerr.InvalidIMEI, "%d has more than 14 digits", n)
	}
	return IMEI{tac: uint32(n / SNRsPerTAC), snr: uint32(n % SNRsPerTAC)}, nil
}

// TAC returns the Type Allocation Code.
func (m IMEI) TAC() uint32 { return m.tac }

// SNR returns the serial number within the TAC.
func (m IMEI) SNR() uint32 { return m.snr }

// ReportingBody returns the reporting-body identifier: the first two digits
// of the TAC.
func (m IMEI) ReportingBody() uint8 { return ReportingBody(m.tac) }

// Uint64 returns the 14 digits TAC+SNR as one number (TAC*1,000,000+SNR).
// It orders IMEIs as their digit strings do and suits bitmaps and sorting.
func (m IMEI) Uint64() uint64 { return uint64(m.tac)*SNRsPerTAC + uint64(m.snr) }

// Compare returns -1, 0 or +1 as m sorts before, with or after o.
func (m IMEI) Compare(o IMEI) int {
	a, b := m.Uint64(), o.Uint64()
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// CheckDigit returns the Luhn check digit (0 to 9, a number, not a character).
func (m IMEI) CheckDigit() byte {
	var d [14]byte
	m.put14(d[:])
	return luhn14(&d)
}

// TACString returns the TAC as 8 digits.
func (m IMEI) TACString() string { return FormatTAC(m.tac) }

// SNRString returns the serial number as 6 digits.
func (m IMEI) SNRString() string {
	var b [6]byte
	putDigits(b[:], uint64(m.snr))
	return string(b[:])
}

// String returns the 15-digit form: TAC, SNR and check digit.
func (m IMEI) String() string {
	var b [15]byte
	return string(m.Append(b[:0]))
}

// Digits14 returns the 14-digit form TAC+SNR without check digit: the form
// national registers store and compare.
func (m IMEI) Digits14() string {
	var b [14]byte
	return string(m.AppendDigits14(b[:0]))
}

// Append appends the 15-digit form to dst.
func (m IMEI) Append(dst []byte) []byte {
	var d [15]byte
	m.put14(d[:14])
	d[14] = '0' + luhn14((*[14]byte)(d[:14]))
	return append(dst, d[:]...)
}

// AppendDigits14 appends the 14-digit form to dst.
func (m IMEI) AppendDigits14(dst []byte) []byte {
	var d [14]byte
	m.put14(d[:])
	return append(dst, d[:]...)
}

// IMEISV returns the 16-digit IMEISV of this equipment with software version
// svn (0 to 98; 99 is reserved by TS 23.003 §6.2.2).
func (m IMEI) IMEISV(svn int) (string, error) {
	if svn < 0 || svn > MaxSVN {
		return "", tacerr.Field(tacerr.InvalidIMEI, "svn", "software version number %d out of range: use 0 to %d (99 is reserved)", svn, MaxSVN)
	}
	var d [16]byte
	m.put14(d[:14])
	d[14] = '0' + byte(svn/10)
	d[15] = '0' + byte(svn%10)
	return string(d[:]), nil
}

// MarshalText encodes the IMEI in its 15-digit form.
func (m IMEI) MarshalText() ([]byte, error) { return m.Append(nil), nil }

// UnmarshalText accepts every form [ParseBytes] accepts.
func (m *IMEI) UnmarshalText(b []byte) error {
	v, err := ParseBytes(b)
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// put14 writes the 14 ASCII digits TAC+SNR into d[:14].
func (m IMEI) put14(d []byte) {
	putDigits(d[:8], uint64(m.tac))
	putDigits(d[8:14], uint64(m.snr))
}

// putDigits writes n as len(d) ASCII digits, zero-padded on the left.
func putDigits(d []byte, n uint64) {
	for i := len(d) - 1; i >= 0; i-- {
		d[i] = '0' + byte(n%10)
		n /= 10
	}
}

// ReportingBody returns the reporting-body identifier of a TAC: its first
// two digits.
func ReportingBody(tac uint32) uint8 { return uint8(tac / 1_000_000 % 100) }

// IsTestTAC reports whether tac lies under the reporting-body identifier
// GSMA TS.06 keeps for test IMEIs (00).
func IsTestTAC(tac uint32) bool { return ReportingBody(tac) == TestReportingBody }

// FormatTAC returns tac as 8 digits.
func FormatTAC(tac uint32) string {
	var b [8]byte
	putDigits(b[:], uint64(tac))
	return string(b[:])
}

// ParseTAC parses a TAC: exactly 8 digits, nothing else.
func ParseTAC(s string) (uint32, error) {
	if len(s) != 8 {
		return 0, tacerr.Field(tacerr.InvalidIMEI, "tac", "a TAC is exactly 8 digits, got %d characters", len(s))
	}
	var n uint32
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, tacerr.Field(tacerr.InvalidIMEI, "tac", "a TAC is exactly 8 digits: character %d is %s", runePos(s, i), quoteAt(s, i))
		}
		n = n*10 + uint32(c-'0')
	}
	return n, nil
}

// Luhn returns the Luhn check digit (ISO/IEC 7812 Annex B, as TS 23.003
// Annex B applies it) of a string of ASCII digits: the digit that, appended,
// makes the whole pass the Luhn test. For an IMEI, pass the 14 digits
// TAC+SNR.
func Luhn(digits string) (byte, error) {
	if digits == "" {
		return 0, tacerr.New(tacerr.InvalidInput, "Luhn over no digits: give at least one digit")
	}
	sum := 0
	double := true // the rightmost payload digit is doubled
	for i := len(digits) - 1; i >= 0; i-- {
		c := digits[i]
		if c < '0' || c > '9' {
			return 0, tacerr.New(tacerr.InvalidInput, "Luhn over %q: character %d is %s, only digits are allowed", digits, runePos(digits, i), quoteAt(digits, i))
		}
		d := int(c - '0')
		if double {
			d = doubled[d]
		}
		sum += d
		double = !double
	}
	return byte((10 - sum%10) % 10), nil
}

// doubled[d] is the Luhn contribution of a doubled digit d: the digit sum
// of 2*d.
var doubled = [10]int{0, 2, 4, 6, 8, 1, 3, 5, 7, 9}

// luhn14 returns the check digit of 14 ASCII digits.
func luhn14(d *[14]byte) byte {
	sum := 0
	for i := 0; i < 14; i++ {
		v := int(d[i] - '0')
		if i%2 == 1 { // D1, D3 ... D13 counted from the right
			v = doubled[v]
		}
		sum += v
	}
	return byte((10 - sum%10) % 10)
}
