package imei_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/tacerr"
)

// Published examples, check digits verified by hand (Luhn, TS 23.003 Annex B):
//   - 49-015420-323751-8: the worked example of the Luhn check digit used in
//     the GSMA IMEI guidelines and Wikipedia.
//   - 35-209900-176148-1 and IMEISV 35-209900-176148-23: Wikipedia's example.
//   - 90420156-025763: the TAC and SNR of the IMEI URN example in RFC 7254
//     and TS 23.003 §13.8 (urn:gsma:imei:90420156-025763-0); its check
//     digit is 7, which shows that the URN's last field (0) is the spare
//     digit, not the check digit.
func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		tac     uint32
		snr     uint32
		cd      byte
		wantErr string // substring of the error; empty when valid
	}{
		{name: "15 digits", in: "490154203237518", tac: 49015420, snr: 323751, cd: 8},
		{name: "14 digits computes check digit", in: "49015420323751", tac: 49015420, snr: 323751, cd: 8},
		{name: "hyphen groups", in: "49-015420-323751-8", tac: 49015420, snr: 323751, cd: 8},
		{name: "wikipedia hyphens", in: "35-209900-176148-1", tac: 35209900, snr: 176148, cd: 1},
		{name: "space groups", in: "35209900 176148 1", tac: 35209900, snr: 176148, cd: 1},
		{name: "imeisv hyphens", in: "35-209900-176148-23", tac: 35209900, snr: 176148, cd: 1},
		{name: "imeisv plain", in: "3520990017614823", tac: 35209900, snr: 176148, cd: 1},
		{name: "rfc 7254 example 14 digits", in: "90420156025763", tac: 90420156, snr: 25763, cd: 7},
		{name: "leading zeros in TAC and SNR", in: "00100001000000", tac: 100001, snr: 0, cd: 7},
		{name: "all zeros", in: "000000000000000", tac: 0, snr: 0, cd: 0},
		{name: "all nines", in: "99999999999999", tac: 99999999, snr: 999999, cd: 4},
		{name: "wrong check digit", in: "490154203237513", wantErr: "wrong check digit 3: the check digit of 49015420323751 is 8"},
		{name: "wrong check digit with groups", in: "35-209900-176148-7", wantErr: "the check digit of 35209900176148 is 1"},
		{name: "empty", in: "", wantErr: "no digits"},
		{name: "13 digits", in: "4901542032375", wantErr: "13 digits"},
		{name: "17 digits", in: "49015420323751800", wantErr: "17 digits"},
		{name: "letter", in: "4901542O323751", wantErr: "invalid character 'O' at position 8"},
		{name: "letter after groups", in: "49-015420-32x751-8", wantErr: "invalid character 'x' at position 13"},
		{name: "dot separator", in: "49.015420.323751.8", wantErr: "invalid character '.' at position 3"},
		{name: "unicode digit", in: "4901542032375١", wantErr: "invalid character '١' at position 14"},
		{name: "position counts characters not bytes", in: "4é01542032375", wantErr: "'é' at position 2"},
		{name: "invalid utf8", in: "49015\xff20323751", wantErr: "byte 0xff (not UTF-8) at position 6"},
		{name: "leading space", in: " 490154203237518", wantErr: "' ' at position 1: a space or hyphen may only stand between two digits"},
		{name: "trailing newline", in: "490154203237518\n", wantErr: "invalid character '\\n' at position 16"},
		{name: "trailing hyphen", in: "490154203237518-", wantErr: "'-' at position 16"},
		{name: "double space", in: "49015420  323751", wantErr: "' ' at position 10"},
		{name: "hyphen and space", in: "49015420- 323751", wantErr: "' ' at position 10"},
		{name: "tab", in: "49015420\t323751", wantErr: "invalid character '\\t' at position 9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, parse := range []struct {
				name string
				f    func(string) (imei.IMEI, error)
			}{
				{"Parse", imei.Parse},
				{"ParseBytes", func(s string) (imei.IMEI, error) { return imei.ParseBytes([]byte(s)) }},
			} {
				got, err := parse.f(tt.in)
				if tt.wantErr != "" {
					if err == nil {
						t.Fatalf("%s(%q) = %v, want error containing %q", parse.name, tt.in, got, tt.wantErr)
					}
					if !tacerr.Is(err, tacerr.InvalidIMEI) {
						t.Errorf("%s(%q) error code = %s, want %s", parse.name, tt.in, tacerr.CodeOf(err), tacerr.InvalidIMEI)
					}
					if !strings.Contains(err.Error(), tt.wantErr) {
						t.Errorf("%s(%q) error = %q, want it to contain %q", parse.name, tt.in, err, tt.wantErr)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s(%q): %v", parse.name, tt.in, err)
				}
				if got.TAC() != tt.tac || got.SNR() != tt.snr || got.CheckDigit() != tt.cd {
					t.Errorf("%s(%q) = TAC %d SNR %d CD %d, want %d %d %d", parse.name, tt.in, got.TAC(), got.SNR(), got.CheckDigit(), tt.tac, tt.snr, tt.cd)
				}
			}
		})
	}
}

func TestAccessors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                               string
		in                                 string
		str, d14, tacS, snrS, urn, imeisv7 string
		rbi                                uint8
		u64                                uint64
	}{
		{
			name: "gsma example", in: "49-015420-323751-8",
			str: "490154203237518", d14: "49015420323751", tacS: "49015420", snrS: "323751",
			urn: "urn:gsma:imei:49015420-323751-0", imeisv7: "4901542032375107", rbi: 49, u64: 49015420323751,
		},
		{
			name: "rfc 7254 example", in: "90420156025763",
			str: "904201560257637", d14: "90420156025763", tacS: "90420156", snrS: "025763",
			urn: "urn:gsma:imei:90420156-025763-0", imeisv7: "9042015602576307", rbi: 90, u64: 90420156025763,
		},
		{
			name: "test TAC with leading zeros", in: "00100001000042",
			str: "001000010000429", d14: "00100001000042", tacS: "00100001", snrS: "000042",
			urn: "urn:gsma:imei:00100001-000042-0", imeisv7: "0010000100004207", rbi: 0, u64: 100001000042,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := imei.Parse(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			sv, err := m.IMEISV(7)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct{ what, got, want string }{
				{"String", m.String(), tt.str},
				{"Digits14", m.Digits14(), tt.d14},
				{"TACString", m.TACString(), tt.tacS},
				{"SNRString", m.SNRString(), tt.snrS},
				{"URN", m.URN(), tt.urn},
				{"IMEISV(7)", sv, tt.imeisv7},
				{"Append", string(m.Append([]byte("x"))), "x" + tt.str},
				{"AppendDigits14", string(m.AppendDigits14([]byte("y"))), "y" + tt.d14},
			} {
				if c.got != c.want {
					t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
				}
			}
			if m.ReportingBody() != tt.rbi {
				t.Errorf("ReportingBody = %d, want %d", m.ReportingBody(), tt.rbi)
			}
			if m.Uint64() != tt.u64 {
				t.Errorf("Uint64 = %d, want %d", m.Uint64(), tt.u64)
			}
			back, err := imei.FromUint64(m.Uint64())
			if err != nil || back != m {
				t.Errorf("FromUint64(%d) = %v, %v; want %v", m.Uint64(), back, err, m)
			}
		})
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		tac, snr  uint32
		wantField string // empty when valid
	}{
		{name: "ok", tac: 49015420, snr: 323751},
		{name: "max", tac: imei.MaxTAC, snr: imei.MaxSNR},
		{name: "tac too big", tac: 100_000_000, snr: 1, wantField: "tac"},
		{name: "snr too big", tac: 1, snr: 1_000_000, wantField: "snr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := imei.New(tt.tac, tt.snr)
			if tt.wantField != "" {
				e, ok := tacerr.As(err)
				if !ok || e.Code != tacerr.InvalidIMEI || e.Field != tt.wantField {
					t.Fatalf("New(%d, %d) error = %v, want invalid_imei on field %s", tt.tac, tt.snr, err, tt.wantField)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.TAC() != tt.tac || m.SNR() != tt.snr {
				t.Errorf("New(%d, %d) = %d/%d", tt.tac, tt.snr, m.TAC(), m.SNR())
			}
		})
	}
	if _, err := imei.FromUint64(100_000_000_000_000); err == nil {
		t.Error("FromUint64 of a 15-digit number succeeded")
	}
}

func TestIMEIIsAMapKey(t *testing.T) {
	t.Parallel()
	a, _ := imei.Parse("49-015420-323751-8")
	b, _ := imei.Parse("4901542032375123") // the IMEISV of the same equipment
	c, _ := imei.Parse("49015420323752")
	seen := map[imei.IMEI]int{a: 1}
	seen[b]++
	seen[c]++
	if len(seen) != 2 || seen[a] != 2 {
		t.Errorf("map = %v, want the IMEI and its IMEISV to be one key", seen)
	}
	if a.Compare(c) != -1 || c.Compare(a) != 1 || a.Compare(b) != 0 {
		t.Errorf("Compare is inconsistent")
	}
}

func TestParseSV(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		svn     int
		wantErr string
	}{
		{name: "wikipedia", in: "35-209900-176148-23", svn: 23},
		{name: "svn 00", in: "3520990017614800", svn: 0},
		{name: "svn 99 is read even though reserved", in: "3520990017614899", svn: 99},
		{name: "15 digits is not an IMEISV", in: "352099001761481", wantErr: "an IMEISV is 16 digits"},
		{name: "bad character", in: "35209900176148a3", wantErr: "position 15"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, svn, err := imei.ParseSV(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSV(%q) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if svn != tt.svn || m.Digits14() != "35209900176148" {
				t.Errorf("ParseSV(%q) = %s, %d; want 35209900176148, %d", tt.in, m.Digits14(), svn, tt.svn)
			}
		})
	}
}

func TestIMEISVRange(t *testing.T) {
	t.Parallel()
	m, _ := imei.Parse("35209900176148")
	tests := []struct {
		name string
		svn  int
		want string // empty when an error is expected
	}{
		{name: "zero", svn: 0, want: "3520990017614800"},
		{name: "98", svn: 98, want: "3520990017614898"},
		{name: "99 reserved", svn: 99},
		{name: "negative", svn: -1},
		{name: "three digits", svn: 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := m.IMEISV(tt.svn)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("IMEISV(%d) = %q, want an error", tt.svn, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("IMEISV(%d) = %q, %v; want %q", tt.svn, got, err, tt.want)
			}
		})
	}
}

func TestParseURN(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    string // Digits14; empty when an error is expected
		wantErr string
	}{
		{name: "rfc 7254 example", in: "urn:gsma:imei:90420156-025763-0", want: "90420156025763"},
		{name: "with svn and vers parameters", in: "urn:gsma:imei:90420156-025763-0;svn=42;vers=0", want: "90420156025763"},
		{name: "check digit instead of spare", in: "urn:gsma:imei:90420156-025763-7", want: "90420156025763"},
		{name: "case-insensitive urn and nid", in: "URN:GSMA:imei:49015420-323751-0", want: "49015420323751"},
		{name: "wrong last digit", in: "urn:gsma:imei:90420156-025763-3", wantErr: "must be 0 (the spare digit, RFC 7254) or the check digit 7"},
		{name: "other namespace", in: "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6", wantErr: "must start with"},
		{name: "imeisv nss is not rfc 7254", in: "urn:gsma:imeisv:90420156-025763-42", wantErr: "must start with"},
		{name: "upper-case nss", in: "urn:gsma:IMEI:90420156-025763-0", wantErr: "must start with"},
		{name: "short tac", in: "urn:gsma:imei:9042015-025763-0", wantErr: "TTTTTTTT-SSSSSS-0"},
		{name: "letters", in: "urn:gsma:imei:9042015a-025763-0", wantErr: "must be digits"},
		{name: "bad parameter", in: "urn:gsma:imei:90420156-025763-0;svn=4", wantErr: `parameter "svn=4"`},
		{name: "empty parameter", in: "urn:gsma:imei:90420156-025763-0;", wantErr: `parameter ""`},
		{name: "bare prefix", in: "urn:gsma:imei:", wantErr: "TTTTTTTT-SSSSSS-0"},
		{name: "empty", in: "", wantErr: "must start with"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := imei.ParseURN(tt.in)
			if tt.want == "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !tacerr.Is(err, tacerr.InvalidIMEI) {
					t.Fatalf("ParseURN(%q) = %v, %v; want invalid_imei containing %q", tt.in, m, err, tt.wantErr)
				}
				return
			}
			if err != nil || m.Digits14() != tt.want {
				t.Errorf("ParseURN(%q) = %v, %v; want %s", tt.in, m.Digits14(), err, tt.want)
			}
		})
	}
}

// TestParseAny: the digit forms and the URN form of one IMEI all parse to
// it; errors come from the form's own parser.
func TestParseAny(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"904201560257637", "90420156025763", "90-420156-025763-7",
		"urn:gsma:imei:90420156-025763-0", "URN:GSMA:imei:90420156-025763-7;svn=42"} {
		m, err := imei.ParseAny(in)
		if err != nil || m.Digits14() != "90420156025763" {
			t.Errorf("ParseAny(%q) = %v, %v", in, m, err)
		}
	}
	for in, wantErr := range map[string]string{
		"urn:gsma:imei:90420156-025763-3": "must be 0 (the spare digit, RFC 7254) or the check digit 7",
		"urn:uuid:f81d4fae":               "must start with",
		"904201560257633":                 "wrong check digit 3",
		"ur:gsma:imei:90420156-025763-0":  "invalid character",
	} {
		if _, err := imei.ParseAny(in); err == nil || !strings.Contains(err.Error(), wantErr) || !tacerr.Is(err, tacerr.InvalidIMEI) {
			t.Errorf("ParseAny(%q) error %v; want invalid_imei containing %q", in, err, wantErr)
		}
	}
}

func TestParseTAC(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    uint32
		wantErr string
	}{
		{name: "ok", in: "35209900", want: 35209900},
		{name: "test range", in: "00100001", want: 100001},
		{name: "seven digits", in: "3520990", wantErr: "exactly 8 digits, got 7"},
		{name: "nine digits", in: "352099001", wantErr: "got 9"},
		{name: "letter", in: "3520990X", wantErr: "character 8 is 'X'"},
		{name: "hyphen", in: "35-20990", wantErr: "character 3 is '-'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := imei.ParseTAC(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseTAC(%q) = %d, %v; want error %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ParseTAC(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
	if imei.ReportingBody(35209900) != 35 || !imei.IsTestTAC(100001) || imei.IsTestTAC(99000001) {
		t.Error("ReportingBody/IsTestTAC wrong")
	}
	if imei.FormatTAC(100001) != "00100001" {
		t.Errorf("FormatTAC(100001) = %q", imei.FormatTAC(100001))
	}
}

func TestLuhn(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    byte
		wantErr bool
	}{
		{name: "gsma example", in: "49015420323751", want: 8},
		{name: "wikipedia example", in: "35209900176148", want: 1},
		{name: "rfc 7254 example", in: "90420156025763", want: 7},
		{name: "payment card test number", in: "7992739871", want: 3}, // ISO/IEC 7812 worked example
		{name: "one digit", in: "0", want: 0},
		{name: "empty", in: "", wantErr: true},
		{name: "letter", in: "12a4", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := imei.Luhn(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Luhn(%q) = %d, want an error", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Luhn(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestJSON(t *testing.T) {
	t.Parallel()
	type msg struct {
		IMEI imei.IMEI `json:"imei"`
	}
	var got msg
	if err := json.Unmarshal([]byte(`{"imei":"49-015420-323751-8"}`), &got); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `{"imei":"490154203237518"}` {
		t.Errorf("round trip = %s", out)
	}
	if err := json.Unmarshal([]byte(`{"imei":"490154203237519"}`), &got); !tacerr.Is(err, tacerr.InvalidIMEI) {
		t.Errorf("bad check digit through JSON: %v", err)
	}
}

func TestParseBytesDoesNotAllocate(t *testing.T) {
	lines := [][]byte{[]byte("490154203237518"), []byte("35-209900-176148-23"), []byte("49015420323751")}
	allocs := testing.AllocsPerRun(100, func() {
		for _, l := range lines {
			if _, err := imei.ParseBytes(l); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs != 0 {
		t.Errorf("ParseBytes allocated %.1f times per run, want 0", allocs)
	}
}
