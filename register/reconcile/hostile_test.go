package reconcile

import (
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOutputCellsAreNotFormulas: what a hostile register file puts into
// the category files (a duplicate's device_id and the serial it maps back
// to, a malformed line's content) never reaches a spreadsheet as a
// formula: a cell that would start with =, +, - or @ is written with a
// leading apostrophe, and the rest of it is kept as it was.
func TestOutputCellsAreNotFormulas(t *testing.T) {
	led := NewMemLedger()
	led.Add(tac, 1, Bound)
	led.Add(tac, 2, Bound)
	file := "approved_imei,make,model,status,model_number,brand_name,device_type,radio_interface,device_id\n" +
		im14(1) + ",Acme,P,whitelist,,Acme,,,D1\n" +
		im14(1) + `,Acme,P,whitelist,,Acme,,,"=HYPERLINK(""http://evil.example/?"",""open"")"` + "\n" +
		im14(2) + ",Acme,P,whitelist,,Acme,,,D2\n" +
		im14(2) + ",Acme,P,whitelist,,Acme,,,QQ3D1Q2B1\n" + // an id tacline would write for the serial "=1+1"
		"=cmd|' /C calc'!A0\n" +
		"@SUM(1+1)\n" +
		"-2+3\n"
	in := &Input{Reader: strings.NewReader(file), Name: "hostile"}
	out := t.TempDir()
	sum, err := Run(context.Background(), led, in, Options{Format: FormatDIRBS, OutDir: out})
	if err != nil {
		t.Fatal(err)
	}
	if sum.DuplicatesInRegister != 2 || sum.Malformed != 3 || sum.Matched != 2 {
		t.Fatalf("summary %+v", sum)
	}
	want := map[string][]string{
		FileDuplicates: {`'=HYPERLINK(""http://evil.example/?"",""open"")`, "QQ3D1Q2B1", "'=1+1"},
		FileMalformed:  {"'=cmd|' /C calc'!A0", "'@SUM(1+1)", "'-2+3"},
	}
	for _, name := range []string{FileDuplicates, FileMalformed} {
		f, err := os.Open(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		records, err := csv.NewReader(f).ReadAll()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cells := map[string]bool{}
		for _, rec := range records {
			for _, c := range rec {
				if c != "" && strings.ContainsRune("=+-@", rune(c[0])) {
					t.Errorf("%s: cell %q would be a spreadsheet formula", name, c)
				}
				cells[c] = true
			}
		}
		for _, c := range want[name] {
			if !cells[c] {
				t.Errorf("%s lacks the cell %q: %q", name, c, records)
			}
		}
	}
}

// TestUnreadableEncodingRefused: a register list saved as UTF-16 (a
// spreadsheet's "Unicode text") or with lines ending in CR alone (classic
// Mac) has no line tacline can read. Before, such a file ran to the end
// with every row malformed (or one huge malformed row) and every bound IMEI
// reported missing_in_register: a regulator's whole fleet "unregistered".
// Now the run is refused before any row is counted, naming the file, what
// is wrong with it and how to save it instead, and writes no category file.
func TestUnreadableEncodingRefused(t *testing.T) {
	led := NewMemLedger()
	led.Add(tac, 1, Bound)
	led.Add(tac, 2, Bound)
	utf16 := func(bom []byte, s string, le bool) string {
		b := append([]byte(nil), bom...)
		for _, c := range []byte(s) {
			if le {
				b = append(b, c, 0)
			} else {
				b = append(b, 0, c)
			}
		}
		return string(b)
	}
	lines := im(1) + "\r\n" + im(2) + "\r\n"
	dirbs := "approved_imei,make\n" + im14(1) + ",Acme\n" + im14(2) + ",Acme\n"
	for _, tc := range []struct {
		name, content, want string
		format              Format
	}{
		{"utf16le", utf16([]byte{0xff, 0xfe}, lines, true), "UTF-16", FormatAuto},
		{"utf16be", utf16([]byte{0xfe, 0xff}, lines, false), "UTF-16", FormatAuto},
		{"utf16le-no-bom", utf16(nil, lines, true), "UTF-16", FormatAuto},
		{"utf16le-dirbs", utf16([]byte{0xff, 0xfe}, dirbs, true), "UTF-16", FormatDIRBS},
		{"cr-only", strings.ReplaceAll(lines, "\r\n", "\r"), "carriage return", FormatAuto},
		{"cr-only-dirbs", strings.ReplaceAll(dirbs, "\n", "\r"), "carriage return", FormatAuto},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := &Input{Reader: strings.NewReader(tc.content), Name: "list.csv"}
			out := t.TempDir()
			sum, err := Run(context.Background(), led, in, Options{Format: tc.format, OutDir: out})
			if err == nil {
				t.Fatalf("Run accepted the file: %+v", sum)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) || !strings.Contains(msg, "list.csv") || !strings.Contains(msg, "save") {
				t.Fatalf("Run = %v, want an error naming the file, %q and how to save it", err, tc.want)
			}
			if _, err := os.Stat(filepath.Join(out, FileMissing)); err == nil {
				t.Fatalf("%s written for a file that was refused", FileMissing)
			}
		})
	}
	// A file that is fine still runs: CRLF, a UTF-8 BOM, a quoted field
	// holding a line break.
	in := &Input{Reader: strings.NewReader("\xef\xbb\xbf" + "approved_imei,make\r\n" + im14(1) + ",\"Ac\r\nme\"\r\n" + im14(2) + ",Acme\r\n"), Name: "ok.csv"}
	sum, err := Run(context.Background(), led, in, Options{OutDir: t.TempDir()})
	if err != nil || sum.Matched != 2 || sum.Malformed != 0 {
		t.Fatalf("Run = %+v, %v", sum, err)
	}
}
