package imei

import (
	"fmt"
	"unicode/utf8"

	"github.com/tacline/tacline/tacerr"
)

// Parse parses an IMEI given as 14 digits (TAC+SNR; the check digit is
// computed), 15 digits (TAC+SNR+check digit, which must be right) or 16
// digits (IMEISV: TAC+SNR+SVN; the SVN is dropped, see [ParseSV]). A single
// space or hyphen may stand between any two digits, so "35-209900-176148-1"
// and "35209900 176148 1" are accepted; nothing else is (no leading or
// trailing blanks, no other characters). Errors have code tacerr.InvalidIMEI.
func Parse(s string) (IMEI, error) {
	r, err := scan(s)
	if err != nil {
		return IMEI{}, err
	}
	return r.imei()
}

// ParseBytes is [Parse] over a byte slice. It does not allocate when b is
// valid.
func ParseBytes(b []byte) (IMEI, error) {
	r, err := scan(b)
	if err != nil {
		return IMEI{}, err
	}
	return r.imei()
}

// ParseSV parses an IMEISV (16 digits: TAC+SNR+SVN, with the separators
// [Parse] accepts) and returns the IMEI and the software version number.
func ParseSV(s string) (IMEI, int, error) {
	r, err := scan(s)
	if err != nil {
		return IMEI{}, 0, err
	}
	if r.n != 16 {
		return IMEI{}, 0, tacerr.New(tacerr.InvalidIMEI, "an IMEISV is 16 digits (TAC, serial number, software version), got %d", r.n)
	}
	return IMEI{tac: r.tac, snr: r.snr}, int(r.d15)*10 + int(r.d16), nil
}

// input is what the parsers read.
type input interface{ ~string | ~[]byte }

// scanned is the result of one pass over the input.
type scanned struct {
	tac, snr uint32
	d15, d16 byte // the 15th and 16th digits, as numbers
	n        int  // digits seen
	sum      int  // Luhn sum over the first 14 digits
}

// scan reads digits and separators in one pass. It checks characters and
// separator placement; the caller checks the digit count. The loop only
// copies digit values; the parts and the Luhn sum are computed afterwards
// from at most 16 digits, which keeps the per-byte work to one comparison.
func scan[T input](s T) (scanned, error) {
	var d [16]byte
	n := 0
	prevDigit := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if v := c - '0'; v <= 9 {
			if n < len(d) {
				d[n] = v
			}
			n++
			prevDigit = true
			continue
		}
		if (c != ' ' && c != '-') || !prevDigit {
			return scanned{}, badCharError(string(s), i)
		}
		prevDigit = false
	}
	if len(s) > 0 && !prevDigit {
		return scanned{}, separatorError(string(s), len(s)-1)
	}
	r := scanned{n: n, d15: d[14], d16: d[15]}
	if n >= 14 {
		for i := 0; i < 8; i++ {
			r.tac = r.tac*10 + uint32(d[i])
		}
		for i := 8; i < 14; i++ {
			r.snr = r.snr*10 + uint32(d[i])
		}
		for i := 0; i < 14; i += 2 { // D14, D12 ... D2 as they are; D13 ... D1 doubled
			r.sum += int(d[i]) + doubled[d[i+1]]
		}
	}
	return r, nil
}

// imei checks the digit count and the check digit and returns the value.
func (r scanned) imei() (IMEI, error) {
	switch r.n {
	case 14, 16:
	case 15:
		if want := byte((10 - r.sum%10) % 10); r.d15 != want {
			return IMEI{}, checkDigitError(r, want)
		}
	default:
		return IMEI{}, lengthError(r.n)
	}
	return IMEI{tac: r.tac, snr: r.snr}, nil
}

func lengthError(n int) error {
	if n == 0 {
		return tacerr.New(tacerr.InvalidIMEI, "no digits: an IMEI is 14 digits (TAC+serial number), 15 (with check digit) or 16 (IMEISV)")
	}
	return tacerr.New(tacerr.InvalidIMEI, "%d digits: an IMEI is 14 digits (TAC+serial number), 15 (with check digit) or 16 (IMEISV)", n)
}

func checkDigitError(r scanned, want byte) error {
	m := IMEI{tac: r.tac, snr: r.snr}
	return tacerr.New(tacerr.InvalidIMEI, "wrong check digit %d: the check digit of %s is %d (a digit is mistyped, or this is not an IMEI)", r.d15, m.Digits14(), want)
}

func separatorError(s string, i int) error {
	return tacerr.New(tacerr.InvalidIMEI, "%s at position %d: a space or hyphen may only stand between two digits", quoteAt(s, i), runePos(s, i))
}

// badCharError reports the character at byte offset i: a misplaced
// separator or a character that is neither digit nor separator.
func badCharError(s string, i int) error {
	if s[i] == ' ' || s[i] == '-' {
		return separatorError(s, i)
	}
	return tacerr.New(tacerr.InvalidIMEI, "invalid character %s at position %d: an IMEI holds digits, with single spaces or hyphens between them", quoteAt(s, i), runePos(s, i))
}

// runePos returns the 1-based character position of byte offset i in s.
func runePos(s string, i int) int { return utf8.RuneCountInString(s[:i]) + 1 }

// quoteAt quotes the character at byte offset i of s for an error message.
func quoteAt(s string, i int) string {
	r, size := utf8.DecodeRuneInString(s[i:])
	if r == utf8.RuneError && size <= 1 {
		return fmt.Sprintf("byte 0x%02x (not UTF-8)", s[i])
	}
	return fmt.Sprintf("%q", r)
}
