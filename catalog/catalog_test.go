package catalog_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/catalog"
	"github.com/tacline/tacline/tacerr"
)

// Test data uses TACs under reporting body 00, which GSMA TS.06 keeps for
// test IMEIs: no manufacturer holds one (99 is not such a range: it belongs
// to the Global Hexadecimal Administrator).

func date(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

func validTAC() catalog.TAC {
	return catalog.TAC{
		TAC: 100100, Brand: "Tacline Test Devices", ModelName: "TL-Phone 1",
		ModelNumber: "TLP1-EU", MarketingName: "Tacline One", DeviceType: "Smartphone",
		RadioInterfaces: []string{"GSM", "LTE", "NR"}, IMEIsPerDevice: 2,
		AllocationDate: date(2024, time.March, 7),
		Approvals: []catalog.Approval{
			{Market: "EU", Reference: "CE-2024-0042", ValidFrom: date(2024, time.March, 7)},
			{Market: "GB", Reference: "UKCA-77", ValidFrom: date(2024, time.April, 1), ValidUntil: date(2026, time.March, 31)},
		},
	}
}

func TestParseGoodFile(t *testing.T) {
	t.Parallel()
	f, err := os.Open("testdata/good.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := catalog.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	want := []catalog.TAC{
		validTAC(),
		{
			TAC: 100101, Brand: "Tacline Test Devices", ModelName: "TL-Module M2", DeviceType: "Module",
			RadioInterfaces: []string{"LTE-M", "NB-IoT"}, IMEIsPerDevice: 1, AllocationDate: date(2025, time.January, 15),
		},
		{
			TAC: 100102, Brand: "Tacline Test Devices", ModelName: "TL-Tab", DeviceType: "Tablet",
			RadioInterfaces: []string{"GSM", "LTE", "NR-n78"}, IMEIsPerDevice: 1, AllocationDate: date(2025, time.December, 1),
			Approvals: []catalog.Approval{{Market: "DE", Reference: "BNetzA-1", ValidFrom: date(2025, time.December, 1)}},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse(good.txt) =\n%+v\nwant\n%+v", got, want)
	}
	for _, r := range got {
		if err := r.Validate(); err != nil {
			t.Errorf("parsed record %s does not validate: %v", r.TACString(), err)
		}
	}
}

func TestParseBadFileListsEveryBadLine(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/bad.txt")
	if err != nil {
		t.Fatal(err)
	}
	got, err := catalog.Parse(bytes.NewReader(data))
	if got != nil {
		t.Errorf("Parse returned %d records along with an error; want none", len(got))
	}
	if !tacerr.Is(err, tacerr.InvalidInput) {
		t.Fatalf("error %v has code %s, want invalid_input", err, tacerr.CodeOf(err))
	}
	var pe *catalog.ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v does not carry a *catalog.ParseError", err)
	}
	want := []string{
		`line 3: TAC: "0010020" is not a TAC: give exactly 8 digits`,
		`line 4: Allocation_Date: "2024-03-07": use dd-Mon-yyyy, e.g. 07-Mar-2024`,
		`line 5: Manufacturer: is required`,
		`line 6: Optional_Fields imeis_per_device: 6 IMEIs per device: use 1 to 5 (one per SIM slot)`,
		`line 7: TAC: 00100200 is already given on line 2; each TAC appears once`,
		`line 8: Optional_Fields approval #1: valid-from date "2024-03-07": use dd-Mon-yyyy, e.g. 07-Mar-2024`,
		`line 9: Optional_Fields: unknown key "colour": use model_number, marketing_name, imeis_per_device or approval`,
		`line 10: 6 fields, want 7 separated by '|' (TAC|Manufacturer|Model_Name|Bands|Allocation_Date|Device_Type|Optional_Fields); the last one may be empty`,
		`line 11: Bands: at least one radio interface is required (e.g. GSM,LTE,NR)`,
		`line 12: Optional_Fields approval #1: valid_until valid until 01-Jan-2024 is before valid from 01-Jan-2025`,
		`line 13: Allocation_Date: "31-Feb-2024": use dd-Mon-yyyy, e.g. 07-Mar-2024`,
		`line 13: Optional_Fields imeis_per_device: "zero" is not a number: give 1 to 5`,
	}
	var lines []string
	for _, le := range pe.Errors {
		lines = append(lines, le.String())
	}
	if !reflect.DeepEqual(lines, want) {
		t.Errorf("problems =\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if pe.BadLines != 11 || pe.Omitted != 0 {
		t.Errorf("BadLines = %d, Omitted = %d; want 11, 0", pe.BadLines, pe.Omitted)
	}
	if msg := err.Error(); !strings.Contains(msg, "11 bad lines; nothing was imported") || !strings.Contains(msg, "line 13: Optional_Fields imeis_per_device") {
		t.Errorf("error message does not summarise and list the lines:\n%s", msg)
	}
}

func TestParseProblems(t *testing.T) {
	t.Parallel()
	const ok = "00100100|Brand|Model|LTE|07-Mar-2024|Smartphone|"
	tests := []struct {
		name string
		in   string
		want string // substring of the error; empty when the file is valid
	}{
		{name: "header only", in: catalog.Header + "\n"},
		{name: "crlf and bom", in: "\xef\xbb\xbf" + catalog.Header + "\r\n" + ok + "\r\n"},
		{name: "no trailing newline", in: catalog.Header + "\n" + ok},
		{name: "utf-16le", in: utf16LE("\ufeff" + catalog.Header + "\r\n" + ok + "\r\n"), want: "line 1: the file is UTF-16: save it as UTF-8"},
		{name: "utf-16be", in: utf16BE("\ufeff" + catalog.Header + "\n" + ok + "\n"), want: "line 1: the file is UTF-16: save it as UTF-8"},
		{name: "utf-16 without bom", in: utf16LE(catalog.Header + "\n" + ok + "\n"), want: "line 1: the file is UTF-16: save it as UTF-8"},
		{name: "empty file", in: "", want: "line 1: the file is empty"},
		{name: "missing header", in: ok + "\n", want: `line 1: the first line must be the header`},
		{name: "header in other case", in: strings.ToLower(catalog.Header) + "\n" + ok, want: "line 1: the first line must be the header"},
		{name: "eight fields", in: catalog.Header + "\n" + ok + "|\n", want: "line 2: 8 fields, want 7"},
		{name: "tac with letter", in: catalog.Header + "\n0010010X|B|M|LTE|07-Mar-2024|S|", want: `line 2: TAC: "0010010X" is not a TAC`},
		{name: "single-digit day", in: catalog.Header + "\n00100100|B|M|LTE|7-Mar-2024|S|", want: `Allocation_Date: "7-Mar-2024": use dd-Mon-yyyy`},
		{name: "year before 1990", in: catalog.Header + "\n00100100|B|M|LTE|07-Mar-1989|S|", want: "Allocation_Date: year 1989 out of range"},
		{name: "missing date", in: catalog.Header + "\n00100100|B|M|LTE||S|", want: "Allocation_Date: is required"},
		{name: "missing model", in: catalog.Header + "\n00100100|B||LTE|07-Mar-2024|S|", want: "Model_Name: is required"},
		{name: "missing device type", in: catalog.Header + "\n00100100|B|M|LTE|07-Mar-2024||", want: "Device_Type: is required"},
		{name: "bad band", in: catalog.Header + "\n00100100|B|M|LTE;NR|07-Mar-2024|S|", want: `Bands: "LTE;NR" is not a band name`},
		{name: "duplicate band", in: catalog.Header + "\n00100100|B|M|LTE,lte|07-Mar-2024|S|", want: `Bands: "lte" is listed twice`},
		{name: "control character", in: catalog.Header + "\n00100100|B\x01|M|LTE|07-Mar-2024|S|", want: "Manufacturer: \"B\\x01\" contains a control character"},
		{name: "invalid utf8", in: catalog.Header + "\n00100100|B\xff|M|LTE|07-Mar-2024|S|", want: "Manufacturer: is not valid UTF-8"},
		{name: "long brand", in: catalog.Header + "\n00100100|" + strings.Repeat("b", 129) + "|M|LTE|07-Mar-2024|S|", want: "Manufacturer: is 129 characters long"},
		{name: "zero imeis", in: catalog.Header + "\n" + ok + "imeis_per_device=0", want: "0 IMEIs per device"},
		{name: "key twice", in: catalog.Header + "\n" + ok + "model_number=A;model_number=B", want: "Optional_Fields model_number: given twice"},
		{name: "not key=value", in: catalog.Header + "\n" + ok + "model_number", want: `Optional_Fields: "model_number" is not key=value`},
		{name: "trailing semicolon", in: catalog.Header + "\n" + ok + "model_number=A;"},
		{name: "approval too short", in: catalog.Header + "\n" + ok + "approval=EU:CE-1", want: "use MARKET:REFERENCE:FROM[:UNTIL]"},
		{name: "approval bad market", in: catalog.Header + "\n" + ok + "approval=Europe!:CE-1:07-Mar-2024", want: `approval #1: market market "EUROPE!"`},
		{name: "approval empty reference", in: catalog.Header + "\n" + ok + "approval=EU::07-Mar-2024", want: "approval #1: reference is required"},
		{name: "second approval bad", in: catalog.Header + "\n" + ok + "approval=EU:A:07-Mar-2024;approval=GB:B:07-Mar-2024:xx", want: `approval #2: valid-until date "xx"`},
		{name: "formula brand", in: catalog.Header + "\n00100100|=HYPERLINK(\"http://x.example\",\"Acme\")|M|LTE|07-Mar-2024|S|", want: `line 2: Manufacturer: "=HYPERLINK(\"http://x.example\",\"Acme\")" starts with '='`},
		{name: "formula approval reference", in: catalog.Header + "\n" + ok + "approval=EU:@SUM(1):07-Mar-2024", want: `line 2: Optional_Fields approval #1: reference "@SUM(1)" starts with '@'`},
		{name: "approval twice", in: catalog.Header + "\n" + ok + "approval=EU:CE-1:07-Mar-2024:;approval=eu:CE-1:08-Mar-2024", want: `line 2: Optional_Fields approval #2: market EU reference "CE-1" is approval #1 already`},
		{name: "approvals of one market", in: catalog.Header + "\n" + ok + "approval=EU:CE-1:07-Mar-2024:;approval=EU:CE-2:08-Mar-2024"},
		{name: "duplicate tac", in: catalog.Header + "\n" + ok + "\n# comment\n\n" + ok, want: "line 5: TAC: 00100100 is already given on line 2"},
		{name: "line too long", in: catalog.Header + "\n" + ok + "model_number=" + strings.Repeat("x", catalog.MaxLineBytes), want: "line 2: line longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := catalog.Parse(strings.NewReader(tt.in))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				for _, r := range got {
					if err := r.Validate(); err != nil {
						t.Errorf("record %s: %v", r.TACString(), err)
					}
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error = %v\nwant it to contain %q", err, tt.want)
			}
			if got != nil {
				t.Errorf("Parse returned %d records with an error", len(got))
			}
		})
	}
}

// utf16LE and utf16BE encode s (ASCII and the BOM) as UTF-16.
func utf16LE(s string) string { return utf16(s, false) }
func utf16BE(s string) string { return utf16(s, true) }

func utf16(s string, be bool) string {
	var b []byte
	for _, r := range s {
		lo, hi := byte(r), byte(r>>8)
		if be {
			lo, hi = hi, lo
		}
		b = append(b, lo, hi)
	}
	return string(b)
}

func TestParseCapsTheList(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString(catalog.Header + "\n")
	for i := range 150 {
		fmt.Fprintf(&b, "0010%04d|B|M|LTE|2024-03-07|S|\n", i) // every line has a bad date
	}
	_, err := catalog.Parse(strings.NewReader(b.String()))
	var pe *catalog.ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v carries no ParseError", err)
	}
	if len(pe.Errors) != catalog.MaxListedErrors || pe.Omitted != 50 || pe.BadLines != 150 {
		t.Errorf("listed %d, omitted %d, bad lines %d; want %d, 50, 150", len(pe.Errors), pe.Omitted, pe.BadLines, catalog.MaxListedErrors)
	}
	if !strings.Contains(err.Error(), "... and 50 more problems") || !strings.Contains(err.Error(), "line 101: Allocation_Date") {
		t.Errorf("message does not end with the count of the rest: %s", err.Error()[len(err.Error())-200:])
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		mutate    func(*catalog.TAC)
		wantField string // empty when valid
	}{
		{name: "valid", mutate: func(*catalog.TAC) {}},
		{name: "tac too big", mutate: func(c *catalog.TAC) { c.TAC = 100_000_000 }, wantField: "tac"},
		{name: "no brand", mutate: func(c *catalog.TAC) { c.Brand = "" }, wantField: "brand"},
		{name: "brand with blanks", mutate: func(c *catalog.TAC) { c.Brand = " Acme" }, wantField: "brand"},
		{name: "brand with pipe", mutate: func(c *catalog.TAC) { c.Brand = "A|B" }, wantField: "brand"},
		{name: "model number with semicolon", mutate: func(c *catalog.TAC) { c.ModelNumber = "A;B" }, wantField: "model_number"},
		{name: "no radio", mutate: func(c *catalog.TAC) { c.RadioInterfaces = nil }, wantField: "radio_interfaces"},
		{name: "bad radio", mutate: func(c *catalog.TAC) { c.RadioInterfaces = []string{"LTE", "5G NR"} }, wantField: "radio_interfaces[1]"},
		{name: "six imeis", mutate: func(c *catalog.TAC) { c.IMEIsPerDevice = 6 }, wantField: "imeis_per_device"},
		{name: "zero imeis", mutate: func(c *catalog.TAC) { c.IMEIsPerDevice = 0 }, wantField: "imeis_per_device"},
		{name: "no allocation date", mutate: func(c *catalog.TAC) { c.AllocationDate = time.Time{} }, wantField: "allocation_date"},
		{name: "allocation date with time", mutate: func(c *catalog.TAC) { c.AllocationDate = c.AllocationDate.Add(time.Hour) }, wantField: "allocation_date"},
		{name: "lower-case market", mutate: func(c *catalog.TAC) { c.Approvals[1].Market = "gb" }, wantField: "approvals[1].market"},
		{name: "reference with colon", mutate: func(c *catalog.TAC) { c.Approvals[0].Reference = "CE:1" }, wantField: "approvals[0].reference"},
		{name: "no valid from", mutate: func(c *catalog.TAC) { c.Approvals[0].ValidFrom = time.Time{} }, wantField: "approvals[0].valid_from"},
		{name: "until before from", mutate: func(c *catalog.TAC) { c.Approvals[1].ValidUntil = date(2024, time.March, 31) }, wantField: "approvals[1].valid_until"},
		{name: "formula model", mutate: func(c *catalog.TAC) { c.ModelName = "+cmd /C calc" }, wantField: "model_name"},
		{name: "formula marketing name", mutate: func(c *catalog.TAC) { c.MarketingName = "-2+3" }, wantField: "marketing_name"},
		{name: "approval twice", mutate: func(c *catalog.TAC) { c.Approvals[1].Market, c.Approvals[1].Reference = "EU", "CE-2024-0042" }, wantField: "approvals[1]"},
		{name: "until equals from", mutate: func(c *catalog.TAC) { c.Approvals[1].ValidUntil = c.Approvals[1].ValidFrom }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := validTAC()
			tt.mutate(&c)
			err := c.Validate()
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			e, ok := tacerr.As(err)
			if !ok || e.Code != tacerr.InvalidInput || e.Field != tt.wantField {
				t.Fatalf("Validate error = %v, want invalid_input on field %s", err, tt.wantField)
			}
		})
	}
}

func TestApprovedFor(t *testing.T) {
	t.Parallel()
	c := validTAC() // EU from 07-Mar-2024 open-ended; GB 01-Apr-2024 to 31-Mar-2026
	tests := []struct {
		name   string
		market string
		at     time.Time
		want   bool
	}{
		{name: "eu on first day", market: "EU", at: date(2024, time.March, 7), want: true},
		{name: "eu the day before", market: "EU", at: date(2024, time.March, 7).Add(-time.Nanosecond), want: false},
		{name: "eu open-ended", market: "EU", at: date(2099, time.January, 1), want: true},
		{name: "market case-insensitive", market: "eu", at: date(2025, time.January, 1), want: true},
		{name: "gb on last day, late evening", market: "GB", at: date(2026, time.March, 31).Add(23*time.Hour + 59*time.Minute), want: true},
		{name: "gb the day after", market: "GB", at: date(2026, time.April, 1), want: false},
		{name: "gb before", market: "GB", at: date(2024, time.March, 31), want: false},
		{name: "gb in a non-UTC zone", market: "GB", at: time.Date(2026, time.April, 1, 0, 30, 0, 0, time.FixedZone("CET", 3600)), want: true},
		{name: "member state is not the region", market: "DE", at: date(2025, time.January, 1), want: false},
		{name: "no approvals", market: "", at: date(2025, time.January, 1), want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := c.ApprovedFor(tt.market, tt.at); got != tt.want {
				t.Errorf("ApprovedFor(%q, %s) = %v, want %v", tt.market, tt.at, got, tt.want)
			}
		})
	}
}

func TestWriteRoundTrip(t *testing.T) {
	t.Parallel()
	f, err := os.ReadFile("testdata/good.txt")
	if err != nil {
		t.Fatal(err)
	}
	recs, err := catalog.Parse(bytes.NewReader(f))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := catalog.Write(&buf, recs); err != nil {
		t.Fatal(err)
	}
	back, err := catalog.Parse(&buf)
	if err != nil {
		t.Fatalf("Parse(Write(...)): %v", err)
	}
	if !reflect.DeepEqual(back, recs) {
		t.Errorf("round trip changed the records:\n%+v\n%+v", back, recs)
	}

	bad := validTAC()
	bad.IMEIsPerDevice = 9
	buf.Reset()
	err = catalog.Write(&buf, []catalog.TAC{validTAC(), bad})
	if e, ok := tacerr.As(err); !ok || e.Field != "[1].imeis_per_device" {
		t.Errorf("Write of an invalid record: %v, want field [1].imeis_per_device", err)
	}
	if buf.Len() != 0 {
		t.Errorf("Write wrote %d bytes before failing", buf.Len())
	}
}
