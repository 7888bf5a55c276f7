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
