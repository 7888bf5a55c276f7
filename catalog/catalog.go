// Package catalog owns the TAC catalogue as data: the record tacline keeps
// for each Type Allocation Code (brand, model, radio interfaces, SIM slots,
// allocation date, market approvals), its validation, the market-approval
// question, and the GSMA-style pipe-separated import file. It parses and
// formats; it never touches a database.
//
// The package promises:
//
//   - [TAC.Validate] returns nil or a tacerr.InvalidInput error naming the
//     first field at fault (snake_case, "approvals[1].valid_until").
//   - [Parse] returns every record of a file or none: it collects all bad
//     lines, and if there is any it returns no records and one error listing
//     each bad line with its number and reason (see [ParseError]). The caller
//     writes nothing of a failed import.
//   - [Write] produces a file that [Parse] reads back to the same records.
//   - Dates are calendar days, held as midnight UTC.
//
// The file format is described in docs/imei.md and on [Parse].
package catalog

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/internal/spreadsheet"
	"github.com/tacline/tacline/tacerr"
)

// Limits of a record.
const (
	MaxIMEIsPerDevice = imei.MaxPerDevice // registers accept 1 to 5 IMEIs per device
	MaxTextLen        = 128               // characters in a text field
	minYear           = 1990
)

// TAC is one catalogue record: what a Type Allocation Code stands for.
type TAC struct {
	TAC             uint32
	Brand           string // the manufacturer, as allocated
	ModelName       string
	ModelNumber     string // optional
	MarketingName   string // optional
	DeviceType      string // e.g. Smartphone, Module, IoT Device
	RadioInterfaces []string
	IMEIsPerDevice  int       // SIM slots, 1 to MaxIMEIsPerDevice
	AllocationDate  time.Time // a calendar day, midnight UTC
	Approvals       []Approval
}

// Approval is one market approval (type approval) of a TAC.
type Approval struct {
	// Market is an ISO 3166-1 alpha-2 country code ("DE") or a regional
	// code ("EU", "GCC"): 2 to 8 upper-case letters or digits, starting
	// with a letter.
	Market    string
	Reference string    // the approval certificate or file reference
	ValidFrom time.Time // first day of validity, midnight UTC
	// ValidUntil is the last day of validity, midnight UTC; the zero value
	// means open-ended.
	ValidUntil time.Time
}

// TACString returns the TAC as 8 digits.
func (t TAC) TACString() string { return imei.FormatTAC(t.TAC) }

// ApprovedFor reports whether t holds an approval for market (compared
// case-insensitively) that is in force at the instant at: from 00:00 UTC on
// ValidFrom to the end of the day ValidUntil (UTC), or open-ended. The
// market codes are compared as given: an approval for "EU" does not answer
// for "DE"; mapping countries to regions is policy's business.
func (t TAC) ApprovedFor(market string, at time.Time) bool {
	for _, a := range t.Approvals {
		if !strings.EqualFold(a.Market, market) {
			continue
		}
		if at.Before(a.ValidFrom) {
			continue
		}
		if !a.ValidUntil.IsZero() && !at.Before(a.ValidUntil.AddDate(0, 0, 1)) {
			continue
		}
		return true
	}
	return false
}

// Validate returns nil if t is a complete, consistent record, or a
// tacerr.InvalidInput error naming the first field at fault.
func (t TAC) Validate() error {
	ps := t.problems()
	if len(ps) == 0 {
		return nil
	}
	return tacerr.Field(tacerr.InvalidInput, ps[0].field, "%s", ps[0].msg)
}

// problem is one thing wrong with a record.
type problem struct {
	field string // snake_case field path
	msg   string
}

// problems lists everything wrong with t, in field order.
func (t TAC) problems() []problem {
	var ps []problem
	add := func(field, format string, args ...any) {
		ps = append(ps, problem{field, fmt.Sprintf(format, args...)})
	}
	if t.TAC > imei.MaxTAC {
		add("tac", "TAC %d has more than 8 digits", t.TAC)
	}
	checkText(add, "brand", t.Brand, true, "")
	checkText(add, "model_name", t.ModelName, true, "")
	checkText(add, "model_number", t.ModelNumber, false, ";")
	checkText(add, "marketing_name", t.MarketingName, false, ";")
	checkText(add, "device_type", t.DeviceType, true, "")
	if len(t.RadioInterfaces) == 0 {
		add("radio_interfaces", "at least one radio interface is required (e.g. GSM,LTE,NR)")
	}
	seen := make(map[string]bool, len(t.RadioInterfaces))
	for i, r := range t.RadioInterfaces {
		field := fmt.Sprintf("radio_interfaces[%d]", i)
		switch {
		case !isBandToken(r):
			add(field, "%q is not a band name: use letters, digits and . _ / + - only (e.g. LTE-B3, NR-n78)", r)
		case seen[strings.ToUpper(r)]:
			add(field, "%q is listed twice", r)
		}
		seen[strings.ToUpper(r)] = true
	}
	if t.IMEIsPerDevice < 1 || t.IMEIsPerDevice > MaxIMEIsPerDevice {
		add("imeis_per_device", "%d IMEIs per device: use 1 to %d (one per SIM slot)", t.IMEIsPerDevice, MaxIMEIsPerDevice)
	}
	checkDate(add, "allocation_date", t.AllocationDate, true)
	type approvalKey struct{ market, reference string }
	firstApproval := make(map[approvalKey]int, len(t.Approvals))
	for i, a := range t.Approvals {
		// The ledger keeps one approval per market and reference.
		if j, dup := firstApproval[approvalKey{a.Market, a.Reference}]; dup {
			add(fmt.Sprintf("approvals[%d]", i), "market %s reference %q is approval #%d already: give each approval once", a.Market, a.Reference, j+1)
		} else {
			firstApproval[approvalKey{a.Market, a.Reference}] = i
		}
		p := fmt.Sprintf("approvals[%d].", i)
		if !isMarketCode(a.Market) {
			add(p+"market", "market %q: use an ISO 3166-1 alpha-2 code (DE) or a regional code (EU): 2 to 8 upper-case letters or digits, starting with a letter", a.Market)
		}
		checkText(add, p+"reference", a.Reference, true, ":;")
		checkDate(add, p+"valid_from", a.ValidFrom, true)
		checkDate(add, p+"valid_until", a.ValidUntil, false)
		if !a.ValidUntil.IsZero() && a.ValidUntil.Before(a.ValidFrom) {
			add(p+"valid_until", "valid until %s is before valid from %s", a.ValidUntil.Format(DateLayout), a.ValidFrom.Format(DateLayout))
		}
	}
	return ps
}

// checkText checks a text field: valid UTF-8, no control characters, no
// leading or trailing blanks, no formula start (spreadsheet.FormulaStart), no '|' (the file's separator) nor any of
// extra, at most MaxTextLen characters, present when required.
func checkText(add func(string, string, ...any), field, s string, required bool, extra string) {
	switch {
	case s == "":
		if required {
			add(field, "is required")
		}
	case !utf8.ValidString(s):
		add(field, "is not valid UTF-8")
	case strings.TrimSpace(s) != s:
		add(field, "%q starts or ends with blanks", s)
	case utf8.RuneCountInString(s) > MaxTextLen:
		add(field, "is %d characters long, at most %d are allowed", utf8.RuneCountInString(s), MaxTextLen)
	case strings.ContainsFunc(s, unicode.IsControl):
		add(field, "%q contains a control character", s)
	case spreadsheet.FormulaStart(s):
		// A spreadsheet opening a file this text goes into (the register's
		// CSV lists) would run it as a formula.
		add(field, "%q starts with '%c', which spreadsheets read as a formula: give the name as it is printed", s, s[0])
	case strings.ContainsAny(s, "|"+extra):
		add(field, "%q contains one of %q, which the catalogue file uses as separators", s, "|"+extra)
	}
}

// checkDate checks that d is a calendar day (midnight UTC) in a sensible
// range, or zero when not required.
func checkDate(add func(string, string, ...any), field string, d time.Time, required bool) {
	switch {
	case d.IsZero():
		if required {
			add(field, "is required")
		}
	case !d.Equal(day(d)) || d.Location() != time.UTC:
		add(field, "%s is not a calendar day: give a date at midnight UTC", d)
	case d.Year() < minYear || d.Year() > 9999:
		add(field, "year %d out of range: use %d to 9999", d.Year(), minYear)
	}
}

// day returns midnight UTC of the calendar day d falls on in its location.
func day(d time.Time) time.Time {
	y, m, dd := d.Date()
	return time.Date(y, m, dd, 0, 0, 0, 0, time.UTC)
}

func isBandToken(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("._/+-", c) >= 0) {
			return false
		}
	}
	return true
}

func isMarketCode(s string) bool {
	if len(s) < 2 || len(s) > 8 || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
