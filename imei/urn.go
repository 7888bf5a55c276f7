package imei

import (
	"strings"

	"github.com/tacline/tacline/tacerr"
)

// URNPrefix starts every IMEI URN (RFC 7254 §3: NID "gsma", NSS "imei:...").
const URNPrefix = "urn:gsma:imei:"

// URN returns the RFC 7254 URN of the IMEI: urn:gsma:imei:TTTTTTTT-SSSSSS-0.
//
// The last field is not the check digit. RFC 7254 §4 defines it as the
// "spare" digit of the IMEI as a device transmits it, and 3GPP TS 23.003
// §6.2.1 sets that digit to zero on transmission (the check digit is only
// printed on labels and packaging). This is the form devices use as their
// SIP instance ID (RFC 7255, TS 23.003 §13.8), so tacline writes 0.
func (m IMEI) URN() string {
	var b [len(URNPrefix) + 17]byte
	n := copy(b[:], URNPrefix)
	putDigits(b[n:n+8], uint64(m.tac))
	b[n+8] = '-'
	putDigits(b[n+9:n+15], uint64(m.snr))
	b[n+15] = '-'
	b[n+16] = '0'
	return string(b[:])
}

// ParseURN parses an RFC 7254 IMEI URN. The "urn:gsma:" part is
// case-insensitive (RFC 8141 §3.1); the NSS must be "imei:" followed by
// 8 digits, "-", 6 digits, "-" and the spare digit. The spare digit must be 0
// or, as some devices write it, the correct check digit; any other value is
// an error. The optional RFC 7254 parameters ";svn=DD" and ";vers=D" are
// checked for form and otherwise ignored.
func ParseURN(s string) (IMEI, error) {
	if len(s) < len(URNPrefix) || !strings.EqualFold(s[:len("urn:gsma:")], "urn:gsma:") || s[len("urn:gsma:"):len(URNPrefix)] != "imei:" {
		return IMEI{}, tacerr.New(tacerr.InvalidIMEI, "not an IMEI URN: it must start with %q", URNPrefix)
	}
	rest := s[len(URNPrefix):]
	body, params, _ := strings.Cut(rest, ";")
	if len(body) != 17 || body[8] != '-' || body[15] != '-' {
		return IMEI{}, tacerr.New(tacerr.InvalidIMEI, "IMEI URN %q: after %q give TTTTTTTT-SSSSSS-0 (8-digit TAC, 6-digit serial number, spare digit)", s, URNPrefix)
	}
	tac, ok1 := digitsValue(body[:8])
	snr, ok2 := digitsValue(body[9:15])
	spare, ok3 := digitsValue(body[16:])
	if !ok1 || !ok2 || !ok3 {
		return IMEI{}, tacerr.New(tacerr.InvalidIMEI, "IMEI URN %q: TAC, serial number and spare digit must be digits", s)
	}
	m := IMEI{tac: tac, snr: snr}
	if spare != 0 && byte(spare) != m.CheckDigit() {
		return IMEI{}, tacerr.New(tacerr.InvalidIMEI, "IMEI URN %q: the last digit is %d; it must be 0 (the spare digit, RFC 7254) or the check digit %d", s, spare, m.CheckDigit())
	}
	if params != "" || strings.HasSuffix(rest, ";") {
		for p := range strings.SplitSeq(params, ";") {
			if err := checkURNParam(s, p); err != nil {
				return IMEI{}, err
			}
		}
	}
	return m, nil
}

func checkURNParam(s, p string) error {
	name, val, _ := strings.Cut(p, "=")
	switch {
	case name == "svn" && len(val) == 2:
		if _, ok := digitsValue(val); ok {
			return nil
		}
	case name == "vers" && len(val) == 1:
		if _, ok := digitsValue(val); ok {
			return nil
		}
	}
	return tacerr.New(tacerr.InvalidIMEI, "IMEI URN %q: parameter %q is not svn=DD or vers=D", s, p)
}

// digitsValue returns the value of a string of ASCII digits.
func digitsValue(s string) (uint32, bool) {
	var n uint32
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint32(c-'0')
	}
	return n, len(s) > 0
}

// ParseAny parses an IMEI in any form tacline reads: a value that starts
// with "urn:" (in any case) is an RFC 7254 URN ([ParseURN]); any other value
// is a digit form ([Parse]). It is the parser for people's input, where
// either form may be pasted (for example the URN copied out of a device
// certificate's SAN). Errors have code tacerr.InvalidIMEI.
func ParseAny(s string) (IMEI, error) {
	if len(s) >= 4 && strings.EqualFold(s[:4], "urn:") {
		return ParseURN(s)
	}
	return Parse(s)
}
