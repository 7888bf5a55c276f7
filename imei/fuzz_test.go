package imei_test

import (
	"strings"
	"testing"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/tacerr"
)

var fuzzSeeds = []string{
	"490154203237518", "49015420323751", "49-015420-323751-8", "35209900 176148 1",
	"3520990017614823", "35-209900-176148-23", "490154203237513", "", " ", "-",
	"4901542O323751", "49015420  323751", "490154203237518-", "4é01542032375",
	"49015\xff20323751", "99999999999999999999", "00000000000000",
}

// FuzzParse checks that Parse never panics, that ParseBytes agrees with it,
// that every error is an invalid_imei error, and that every accepted value
// round-trips through String, Digits14, URN and the IMEISV form.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := imei.Parse(s)
		mb, errb := imei.ParseBytes([]byte(s))
		if (err == nil) != (errb == nil) || m != mb {
			t.Fatalf("Parse(%q) = %v, %v but ParseBytes = %v, %v", s, m, err, mb, errb)
		}
		if err != nil {
			if !tacerr.Is(err, tacerr.InvalidIMEI) {
				t.Fatalf("Parse(%q) error %v has code %s", s, err, tacerr.CodeOf(err))
			}
			if err.Error() != errb.Error() {
				t.Fatalf("Parse and ParseBytes disagree on the message: %q vs %q", err, errb)
			}
			return
		}
		checkRoundTrip(t, m)
		digits := strings.Map(func(r rune) rune {
			if r == ' ' || r == '-' {
				return -1
			}
			return r
		}, s)
		if !strings.HasPrefix(digits, m.Digits14()) {
			t.Fatalf("Parse(%q) = %s: not the leading digits of the input", s, m.Digits14())
		}
	})
}

// checkRoundTrip asserts that every output form of m parses back to m.
func checkRoundTrip(t *testing.T, m imei.IMEI) {
	t.Helper()
	for _, form := range []string{m.String(), m.Digits14()} {
		back, err := imei.Parse(form)
		if err != nil || back != m {
			t.Fatalf("Parse(%q) = %v, %v; want %v", form, back, err, m)
		}
	}
	if len(m.String()) != 15 || len(m.Digits14()) != 14 || m.String()[:14] != m.Digits14() {
		t.Fatalf("forms of %v are inconsistent: %q %q", m, m.String(), m.Digits14())
	}
	if cd, err := imei.Luhn(m.Digits14()); err != nil || cd != m.CheckDigit() || m.String()[14] != '0'+cd {
		t.Fatalf("check digit of %s: Luhn %d, %v; CheckDigit %d", m.Digits14(), cd, err, m.CheckDigit())
	}
	back, err := imei.ParseURN(m.URN())
	if err != nil || back != m {
		t.Fatalf("ParseURN(%q) = %v, %v; want %v", m.URN(), back, err, m)
	}
	sv, err := m.IMEISV(42)
	if err != nil {
		t.Fatal(err)
	}
	back, svn, err := imei.ParseSV(sv)
	if err != nil || back != m || svn != 42 {
		t.Fatalf("ParseSV(%q) = %v, %d, %v", sv, back, svn, err)
	}
	n, err := imei.New(m.TAC(), m.SNR())
	if err != nil || n != m || m.TACString()+m.SNRString() != m.Digits14() {
		t.Fatalf("New(%d, %d) = %v, %v", m.TAC(), m.SNR(), n, err)
	}
}

// FuzzParseURN checks that ParseURN never panics and that what it accepts
// formats back to the canonical URN.
func FuzzParseURN(f *testing.F) {
	for _, s := range []string{
		"urn:gsma:imei:90420156-025763-0", "urn:gsma:imei:90420156-025763-7;svn=42",
		"URN:GSMA:imei:49015420-323751-0;vers=0", "urn:gsma:imei:", "urn:gsma:imei:90420156-025763-0;",
		"urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := imei.ParseURN(s)
		if err != nil {
			if !tacerr.Is(err, tacerr.InvalidIMEI) {
				t.Fatalf("ParseURN(%q) error %v has code %s", s, err, tacerr.CodeOf(err))
			}
			return
		}
		checkRoundTrip(t, m)
		if !strings.EqualFold(s[:len(imei.URNPrefix)+15], m.URN()[:len(imei.URNPrefix)+15]) {
			t.Fatalf("ParseURN(%q) = %s", s, m.URN())
		}
	})
}

// FuzzParseAny checks that ParseAny never panics, that it reads a URN as
// ParseURN does and every other value as Parse does, and that what it
// accepts round-trips.
func FuzzParseAny(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	for _, s := range []string{"urn:gsma:imei:90420156-025763-0", "URN:gsma:imei:90420156-025763-7;svn=42", "urn:", "urn", "uRn:x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := imei.ParseAny(s)
		var want imei.IMEI
		var werr error
		if len(s) >= 4 && strings.EqualFold(s[:4], "urn:") {
			want, werr = imei.ParseURN(s)
		} else {
			want, werr = imei.Parse(s)
		}
		if m != want || (err == nil) != (werr == nil) {
			t.Fatalf("ParseAny(%q) = %v, %v; the form's own parser gives %v, %v", s, m, err, want, werr)
		}
		if err != nil {
			if !tacerr.Is(err, tacerr.InvalidIMEI) {
				t.Fatalf("ParseAny(%q) error %v has code %s", s, err, tacerr.CodeOf(err))
			}
			return
		}
		checkRoundTrip(t, m)
		for _, form := range []string{m.String(), m.Digits14(), m.URN()} {
			if back, err := imei.ParseAny(form); err != nil || back != m {
				t.Fatalf("ParseAny(%q) = %v, %v; want %v", form, back, err, m)
			}
		}
	})
}

// FuzzNew checks that New accepts exactly the in-range parts and that they
// round-trip.
func FuzzNew(f *testing.F) {
	f.Add(uint32(49015420), uint32(323751))
	f.Add(uint32(0), uint32(0))
	f.Add(uint32(100_000_000), uint32(1_000_000))
	f.Fuzz(func(t *testing.T, tac, snr uint32) {
		m, err := imei.New(tac, snr)
		if (err == nil) != (tac <= imei.MaxTAC && snr <= imei.MaxSNR) {
			t.Fatalf("New(%d, %d) error = %v", tac, snr, err)
		}
		if err == nil {
			checkRoundTrip(t, m)
		}
	})
}
