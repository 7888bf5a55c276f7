package wire

import (
	"strings"
	"testing"

	"github.com/tacline/tacline/imei"
)

// TestDeviceID: safe serials stay readable, every other serial gets an id
// of its own, and the id maps back. Serials that differed only in
// punctuation or case used to share an id (COLL-X-1, COLLX-1 and COLLX1 all
// gave COLLX1).
func TestDeviceID(t *testing.T) {
	for _, tc := range []struct{ serial, id string }{
		{"SN0001", "SN0001"},
		{"COLLX1", "COLLX1"},
		{"COLLX-1", "QCOLLXQ2D1"},
		{"COLL-X-1", "QCOLLQ2DXQ2D1"},
		{"collx1", "QQ63Q6FQ6CQ6CQ781"},
		{"SNQ1", "QSNQ511"},
		{"Q1", "QQ511"},
		{"IMEI12345678901234", "IMEI12345678901234"},
		{"F1-L1-S01-000123", "QF1Q2DL1Q2DS01Q2D000123"},
		{"a b", "QQ61Q20Q62"},
		{"é", "QQC3QA9"},
		{"", "Q"},
	} {
		if got := DeviceID(tc.serial); got != tc.id {
			t.Errorf("DeviceID(%q) = %q, want %q", tc.serial, got, tc.id)
		}
		for _, id := range []string{tc.id, strings.ToLower(tc.id)} {
			if back, err := DeviceSerial(id); err != nil || back != tc.serial {
				t.Errorf("DeviceSerial(%q) = %q, %v; want %q", id, back, err, tc.serial)
			}
		}
	}
	// The ids of the three serials that used to merge differ, also without case.
	seen := map[string]string{}
	for _, s := range []string{"COLL-X-1", "COLLX-1", "COLLX1", "collx1", "Coll-X-1", "COLL_X_1", "COLL.X.1"} {
		id := strings.ToLower(DeviceID(s))
		if other, ok := seen[id]; ok {
			t.Errorf("serials %q and %q share the device id %q", s, other, id)
		}
		seen[id] = s
	}
	m, _ := imei.Parse("490154203237518")
	if got := DeviceIDOf("", m); got != "QIMEI49015420323751" {
		t.Errorf("DeviceIDOf(no device) = %q", got)
	}
	if got := DeviceIDOf("SN1", m); got != "SN1" {
		t.Errorf("DeviceIDOf(SN1) = %q", got)
	}
	for _, id := range []string{"QIMEI49015420323751", "QCOLLX1", "sn1\u0131", "Q\u0131Q2D", "QQ41", "QQ2", "QQ2G", "COLL-X", "QAB-", "QQ", ""} {
		if s, err := DeviceSerial(id); err == nil {
			t.Errorf("DeviceSerial(%q) = %q, want an error (DeviceID never writes it)", id, s)
		}
	}
}

// FuzzDeviceID: every serial's id is letters and digits, at most
// MaxDeviceID long for a serial of at most 64 bytes, and maps back to the
// serial; two different serials never share an id, compared with or
// without case; DeviceSerial accepts only ids DeviceID writes.
func FuzzDeviceID(f *testing.F) {
	for _, s := range []string{"COLL-X-1", "COLLX-1", "SN0001", "q", "Q", "QIMEI49015420323751", "", "a\x00b", "\xff"} {
		f.Add(s, strings.ToLower(s))
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ia, ib := DeviceID(a), DeviceID(b)
		if ia == "" || !alnum(ia) || ia != strings.ToUpper(ia) {
			t.Fatalf("DeviceID(%q) = %q: not upper-case letters and digits", a, ia)
		}
		if len(a) <= 64 && len(ia) > MaxDeviceID {
			t.Fatalf("DeviceID(%q) is %d long", a, len(ia))
		}
		if back, err := DeviceSerial(strings.ToLower(ia)); err != nil || back != a {
			t.Fatalf("DeviceSerial(DeviceID(%q) = %q) = %q, %v", a, ia, back, err)
		}
		if a != b && strings.EqualFold(ia, ib) {
			t.Fatalf("serials %q and %q share the device id %q", a, b, ia)
		}
		// Any string that DeviceSerial accepts is the id of what it returns.
		if s, err := DeviceSerial(b); err == nil && DeviceID(s) != asciiUpper(b) {
			t.Fatalf("DeviceSerial(%q) = %q, whose id is %q", b, s, DeviceID(s))
		}
	})
}
