package catalog

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/internal/spreadsheet"
	"github.com/tacline/tacline/tacerr"
)

// The catalogue file.
const (
	// Header is the required first line of a catalogue file.
	Header = "TAC|Manufacturer|Model_Name|Bands|Allocation_Date|Device_Type|Optional_Fields"
	// DateLayout is the layout of every date in the file: dd-Mon-yyyy.
	DateLayout = "02-Jan-2006"
	// MaxListedErrors caps the problems a ParseError lists; it counts the
	// rest.
	MaxListedErrors = 100
	// MaxLineBytes is the longest line Parse reads.
	MaxLineBytes = 64 << 10
)

const numColumns = 7

// LineError is one problem on one line of a catalogue file.
type LineError struct {
	Line   int    // 1-based line number
	Column string // the file column ("Allocation_Date", "Optional_Fields approval #2"); empty for the whole line
	Reason string // what is wrong and what to do
}

func (e LineError) String() string {
	if e.Column == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
	}
	return fmt.Sprintf("line %d: %s: %s", e.Line, e.Column, e.Reason)
}

// ParseError lists the problems of a rejected catalogue file. Parse returns
// it wrapped in a tacerr.InvalidInput error; get it with errors.As.
type ParseError struct {
	BadLines int         // lines with at least one problem
	Errors   []LineError // the first MaxListedErrors problems, in line order
	Omitted  int         // problems beyond those listed
}

func (e *ParseError) Error() string {
	var b strings.Builder
	for i, le := range e.Errors {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(le.String())
	}
	if e.Omitted > 0 {
		fmt.Fprintf(&b, "\n... and %d more problems", e.Omitted)
	}
	return b.String()
}

// Parse reads a GSMA-style catalogue file and returns its records, or no
// records and an error listing every bad line.
//
// The format, one record per line, fields separated by '|':
//
//	TAC|Manufacturer|Model_Name|Bands|Allocation_Date|Device_Type|Optional_Fields
//	00100100|Tacline Test|TL-1|GSM,LTE,NR|07-Mar-2024|Smartphone|model_number=TL1-EU;imeis_per_device=2;approval=EU:CE-0042:07-Mar-2024:
//
// The rules:
//
//   - The first line is exactly the header above (a UTF-8 byte-order mark
//     and CRLF line ends are tolerated; a UTF-16 file is refused as such).
//     Blank lines and lines starting with '#' are skipped. Every other
//     line has exactly 7 fields; blanks around fields are trimmed.
//   - TAC: exactly 8 digits, unique within the file.
//   - Manufacturer, Model_Name, Device_Type: required text.
//   - Bands: the radio interfaces, separated by commas and/or spaces; each
//     is letters, digits and . _ / + - (GSM, LTE-B3, NR-n78).
//   - Allocation_Date: dd-Mon-yyyy, e.g. 07-Mar-2024 (English month
//     abbreviation).
//   - Optional_Fields: empty, or key=value pairs separated by ';':
//     model_number=TEXT, marketing_name=TEXT, imeis_per_device=1..5
//     (default 1), and approval=MARKET:REFERENCE:FROM[:UNTIL], repeatable
//     (each MARKET and REFERENCE once per TAC),
//     with dates as dd-Mon-yyyy and an empty or absent UNTIL meaning
//     open-ended. Values cannot contain ';' (nor ':' inside an approval).
func Parse(r io.Reader) ([]TAC, error) {
	p := parser{seen: map[uint32]int{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxLineBytes)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		if n == 1 {
			line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf"))
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if n == 1 && spreadsheet.IsUTF16(line) {
			// Every line would be garbage: one problem says what to do.
			p.fail(1, "", "the file is UTF-16: save it as UTF-8 (in a spreadsheet: CSV UTF-8, then '|' as the separator) and import it again")
			break
		}
		if n == 1 {
			if h := strings.TrimSpace(string(line)); h != Header {
				p.fail(1, "", fmt.Sprintf("the first line must be the header %q, found %q", Header, truncate(h, 120)))
			}
			continue
		}
		trimmed := bytes.TrimSpace(line)
		if len(trimmed) == 0 || trimmed[0] == '#' {
			continue
		}
		p.line(n, string(line))
	}
	if err := sc.Err(); err != nil {
		if !errors.Is(err, bufio.ErrTooLong) {
			return nil, tacerr.Wrap(tacerr.InvalidInput, err, "read catalogue file after line %d", n)
		}
		p.fail(n+1, "", fmt.Sprintf("line longer than %d bytes; reading stopped here", MaxLineBytes))
	}
	if n == 0 {
		p.fail(1, "", fmt.Sprintf("the file is empty: it must start with the header %q", Header))
	}
	if p.err.BadLines > 0 {
		return nil, tacerr.Wrap(tacerr.InvalidInput, &p.err, "catalogue file has %d bad lines; nothing was imported: fix them and import the whole file again", p.err.BadLines)
	}
	return p.out, nil
}

type parser struct {
	out      []TAC
	seen     map[uint32]int // TAC -> line
	err      ParseError
	lastLine int // last line counted in BadLines
}

func (p *parser) fail(line int, column, reason string) {
	if line != p.lastLine {
		p.err.BadLines++
		p.lastLine = line
	}
	if len(p.err.Errors) < MaxListedErrors {
		p.err.Errors = append(p.err.Errors, LineError{Line: line, Column: column, Reason: reason})
	} else {
		p.err.Omitted++
	}
}

// line parses one record line and records it or its problems.
func (p *parser) line(n int, s string) {
	cols := strings.Split(s, "|")
	if len(cols) != numColumns {
		p.fail(n, "", fmt.Sprintf("%d fields, want %d separated by '|' (%s); the last one may be empty", len(cols), numColumns, Header))
		return
	}
	for i := range cols {
		cols[i] = strings.TrimSpace(cols[i])
	}
	bad := false
	fail := func(column, reason string) { bad = true; p.fail(n, column, reason) }

	t := TAC{Brand: cols[1], ModelName: cols[2], DeviceType: cols[5], IMEIsPerDevice: 1}
	tacOK := false
	if tac, err := imei.ParseTAC(cols[0]); err != nil {
		fail("TAC", fmt.Sprintf("%q is not a TAC: give exactly 8 digits", truncate(cols[0], 40)))
	} else {
		t.TAC, tacOK = tac, true
	}
	t.RadioInterfaces = strings.FieldsFunc(cols[3], func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
	dateFormatBad := false
	if d, ok := parseDate(cols[4]); ok {
		t.AllocationDate = d
	} else if cols[4] != "" {
		dateFormatBad = true
		fail("Allocation_Date", fmt.Sprintf("%q: use dd-Mon-yyyy, e.g. 07-Mar-2024", truncate(cols[4], 40)))
	}
	parseOptional(&t, cols[6], fail)
	for _, pr := range t.problems() {
		// Already reported: the TAC's syntax, the date's format, and every
		// field of an approval (parseApproval checks each one as it reads
		// it; what holds between approvals is reported here).
		if pr.field == "tac" || (pr.field == "allocation_date" && dateFormatBad) || strings.HasPrefix(pr.field, "approvals[") && strings.Contains(pr.field, "].") {
			continue
		}
		fail(columnOf(pr.field), pr.msg)
	}
	if tacOK {
		if first, dup := p.seen[t.TAC]; dup {
			fail("TAC", fmt.Sprintf("%s is already given on line %d; each TAC appears once", cols[0], first))
		} else {
			p.seen[t.TAC] = n
		}
	}
	if !bad {
		p.out = append(p.out, t)
	}
}

// parseOptional reads the Optional_Fields column into t. It reports syntax
// problems, and every problem of an approval, through fail.
func parseOptional(t *TAC, s string, fail func(column, reason string)) {
	once := map[string]bool{}
	for part := range strings.SplitSeq(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		key, val, found := strings.Cut(part, "=")
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if !found {
			fail("Optional_Fields", fmt.Sprintf("%q is not key=value", truncate(part, 40)))
			continue
		}
		col := "Optional_Fields " + key
		if key == "model_number" || key == "marketing_name" || key == "imeis_per_device" {
			if once[key] {
				fail(col, "given twice; give it once")
				continue
			}
			once[key] = true
		}
		switch key {
		case "model_number":
			t.ModelNumber = val
		case "marketing_name":
			t.MarketingName = val
		case "imeis_per_device":
			n, err := strconv.Atoi(val)
			if err != nil {
				fail(col, fmt.Sprintf("%q is not a number: give 1 to %d", truncate(val, 20), MaxIMEIsPerDevice))
				continue
			}
			t.IMEIsPerDevice = n
		case "approval":
			a, reason := parseApproval(val)
			if reason != "" {
				fail(fmt.Sprintf("Optional_Fields approval #%d", len(t.Approvals)+1), reason)
			}
			t.Approvals = append(t.Approvals, a)
		default:
			fail("Optional_Fields", fmt.Sprintf("unknown key %q: use model_number, marketing_name, imeis_per_device or approval", truncate(key, 40)))
		}
	}
}

// parseApproval reads MARKET:REFERENCE:FROM[:UNTIL].
func parseApproval(s string) (Approval, string) {
	parts := strings.Split(s, ":")
	if len(parts) < 3 || len(parts) > 4 {
		return Approval{}, fmt.Sprintf("%q: use MARKET:REFERENCE:FROM[:UNTIL], e.g. EU:CE-0042:07-Mar-2024:", truncate(s, 60))
	}
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	a := Approval{Market: strings.ToUpper(parts[0]), Reference: parts[1]}
	var ok bool
	if a.ValidFrom, ok = parseDate(parts[2]); !ok {
		return a, fmt.Sprintf("valid-from date %q: use dd-Mon-yyyy, e.g. 07-Mar-2024", truncate(parts[2], 40))
	}
	if len(parts) == 4 && parts[3] != "" {
		if a.ValidUntil, ok = parseDate(parts[3]); !ok {
			return a, fmt.Sprintf("valid-until date %q: use dd-Mon-yyyy, or leave it empty for open-ended", truncate(parts[3], 40))
		}
	}
	var ps []string
	for _, pr := range (TAC{Approvals: []Approval{a}}).problems() {
		if strings.HasPrefix(pr.field, "approvals[0].") {
			ps = append(ps, strings.TrimPrefix(pr.field, "approvals[0].")+" "+pr.msg)
		}
	}
	return a, strings.Join(ps, "; ")
}

func parseDate(s string) (time.Time, bool) {
	if len(s) != len(DateLayout) {
		return time.Time{}, false
	}
	d, err := time.Parse(DateLayout, s)
	return d, err == nil
}

// columnOf maps a record field path to the file column it comes from.
func columnOf(field string) string {
	name, index, _ := strings.Cut(field, "[")
	switch name {
	case "approvals":
		i, _ := strconv.Atoi(strings.TrimSuffix(index, "]"))
		return fmt.Sprintf("Optional_Fields approval #%d", i+1)
	case "tac":
		return "TAC"
	case "brand":
		return "Manufacturer"
	case "model_name":
		return "Model_Name"
	case "radio_interfaces":
		return "Bands"
	case "allocation_date":
		return "Allocation_Date"
	case "device_type":
		return "Device_Type"
	}
	return "Optional_Fields " + name
}

// truncate shortens s for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "..."
}
