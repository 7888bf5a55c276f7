package reconcile

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/register/registertest"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

const tac = 1234500

func im(snr uint32) string {
	m, _ := imei.New(tac, snr)
	return m.String()
}

func im14(snr uint32) string { return im(snr)[:14] }

// ledgerRows: 1..4 bound, 5 voided, 6 revoked, 7 reserved.
var ledgerRows = []registertest.Row{
	{SNR: 1, State: "BOUND", Device: "D1"}, {SNR: 2, State: "BOUND", Device: "D2"},
	{SNR: 3, State: "BOUND", Device: "D3"}, {SNR: 4, State: "BOUND", Device: "D4"},
	{SNR: 5, State: "VOIDED", Device: "D5"}, {SNR: 6, State: "REVOKED", Device: "D6"},
	{SNR: 7, State: "RESERVED"},
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeZip(t *testing.T, name, inner, content string) string {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create(inner)
	w.Write([]byte(content))
	zw.Close()
	return writeFile(t, name, buf.String())
}

func TestRunAgainstLedger(t *testing.T) {
	// The register: 1, 2 (twice), 5 (voided here), 9 (never allocated),
	// a foreign TAC, and garbage. 3 and 4 are missing.
	foreign := "490154203237518"
	dirbs := "approved_imei,make,model,status,model_number,brand_name,device_type,radio_interface,device_id\r\n" +
		im14(1) + ",Acme,\"Phone, 1\",whitelist,,Acme,,,D1\r\n" +
		im14(2) + ",Acme,P,whitelist,,Acme,,,D2\r\n" +
		im(2) + ",Acme,P,whitelist,,Acme,,,qcollq2dxq2d1\r\n" + // a clone's copy, under device COLL-X-1 (case folded by the register)
		im14(5) + ",Acme,P,whitelist,,Acme,,,D5\r\n" +
		im14(9) + ",Acme,P,whitelist,,Acme,,,X\r\n" +
		foreign + ",Other,P,whitelist,,O,,,Y\r\n" +
		"0123456789ABCDE,Acme,P,whitelist,,Acme,,,Z\r\n" +
		"\r\n" +
		"12345678901234567,Acme\r\n"
	lines := "\xef\xbb\xbf" + im(1) + "\r\n" + im(2) + "\n" + im14(2) + "\n" + im(5) + "\n" + im(9) + "\n" + foreign + "\n" +
		"0123456789ABCDE\n\n12345678901234567\n"
	want := Summary{MissingInRegister: 2, UnknownToManufacturer: 1, StatusMismatch: 1, DuplicatesInRegister: 1,
		Malformed: 3, ForeignTACRows: 1, Matched: 2, RegisterRows: 9, LedgerIMEIs: 7, TACs: 1}
	inputs := []struct {
		name   string
		path   func(t *testing.T) string
		format Format
		header int // 1 when line 1 is a header
	}{
		{"dirbs zip", func(t *testing.T) string { return writeZip(t, "list.zip", "list.csv", dirbs) }, FormatDIRBS, 1},
		{"csv auto", func(t *testing.T) string { return writeFile(t, "list.csv", dirbs) }, FormatAuto, 1},
		{"lines with BOM and CRLF", func(t *testing.T) string { return writeFile(t, "list.txt", lines) }, FormatLines, 0},
		{"lines auto", func(t *testing.T) string { return writeFile(t, "list.txt", lines) }, FormatAuto, 0},
	}
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			db := storetest.Open(t, d)
			registertest.Seed(t, db, tac, ledgerRows)
			for _, tc := range inputs {
				t.Run(tc.name, func(t *testing.T) {
					in, err := OpenInput(tc.path(t))
					if err != nil {
						t.Fatal(err)
					}
					defer in.Close()
					out := t.TempDir()
					got, err := Run(context.Background(), DBLedger{DB: db}, in, Options{Format: tc.format, OutDir: out})
					if err != nil {
						t.Fatal(err)
					}
					want := want
					if tc.header == 1 {
						// the clone's copy of 2 names another device
						want.RegisteredToOtherDevice = 1
					}
					if got != want {
						t.Fatalf("summary\n got %+v\nwant %+v", got, want)
					}
					checkFile(t, out, FileMissing, im(3)+","+im14(3)+",01234500,BOUND", im(4)+","+im14(4)+",01234500,BOUND")
					checkFile(t, out, FileUnknown, im(9)+","+im14(9)+",01234500")
					checkFile(t, out, FileMismatch, im(5)+","+im14(5)+",01234500,VOIDED")
					dup := fmt.Sprint(3, ",", im14(2), ",,") // a plain list names no device
					if tc.header == 1 {
						dup = fmt.Sprint(4, ",", im14(2), ",qcollq2dxq2d1,COLL-X-1")
					}
					checkFile(t, out, FileDuplicates, dup)
					if tc.header == 1 {
						checkFile(t, out, FileOtherDevice, fmt.Sprint(4, ",", im14(2), ",qcollq2dxq2d1,COLL-X-1"))
					} else {
						checkFile(t, out, FileOtherDevice)
					}
					mal := readFile(t, out, FileMalformed)
					for _, s := range []string{fmt.Sprint(7+tc.header, ",\"invalid_imei"), fmt.Sprint(8+tc.header, ",empty"),
						fmt.Sprint(9+tc.header, ",\"invalid_imei: 17 digits"), "invalid character 'A'"} {
						if !strings.Contains(mal, s) {
							t.Errorf("malformed.csv lacks %q:\n%s", s, mal)
						}
					}
				})
			}
		})
	}
}

func readFile(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func checkFile(t *testing.T, dir, name string, rows ...string) {
	t.Helper()
	got := strings.Split(strings.TrimSpace(readFile(t, dir, name)), "\n")[1:]
	if strings.Join(got, "|") != strings.Join(rows, "|") {
		t.Errorf("%s rows\n got %q\nwant %q", name, got, rows)
	}
}

func TestLongLineIsMalformed(t *testing.T) {
	led := NewMemLedger()
	led.Add(tac, 1, Bound)
	led.Add(tac, 2, Bound)
	long := "x" + strings.Repeat("9", 100_000)
	in := &Input{Reader: strings.NewReader(im(1) + "\n" + long + "\n" + im(2) + "\n"), Name: "long"}
	out := t.TempDir()
	sum, err := Run(context.Background(), led, in, Options{OutDir: out})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Malformed != 1 || sum.Matched != 2 || sum.RegisterRows != 3 {
		t.Fatalf("summary %+v", sum)
	}
	if mal := readFile(t, out, FileMalformed); !strings.Contains(mal, "2,line longer than 64 KiB,x999") {
		t.Fatalf("malformed.csv:\n%s", mal)
	}
}

func TestDIRBSFormatNeedsHeader(t *testing.T) {
	in, err := OpenInput(writeFile(t, "x.csv", im(1)+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	_, err = Run(context.Background(), NewMemLedger(), in, Options{Format: FormatDIRBS, OutDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "approved_imei") {
		t.Fatalf("Run = %v, want a header error", err)
	}
}

func TestZipWithTwoCSVsRefused(t *testing.T) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	zw.Create("a.csv")
	zw.Create("b.csv")
	zw.Close()
	if _, err := OpenInput(writeFile(t, "x.zip", buf.String())); err == nil || !strings.Contains(err.Error(), "2 CSV") {
		t.Fatalf("OpenInput = %v", err)
	}
}

func TestField(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		k          int
		want       string
		ok         bool
	}{
		{"first", "a,b,c", 0, "a", true},
		{"last", "a,b,c", 2, "c", true},
		{"missing", "a,b", 2, "", false},
		{"quoted comma", `"x,y",b`, 1, "b", true},
		{"quoted field", `"123" ,b`, 0, "123", true},
		{"blanks", " 12 ,b", 0, "12", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := field([]byte(tc.line), tc.k)
			if ok != tc.ok || string(got) != tc.want {
				t.Fatalf("field = %q, %v", got, ok)
			}
		})
	}
}

func TestParseAllocFree(t *testing.T) {
	var sb strings.Builder
	for i := uint32(0); i < 20000; i++ {
		sb.WriteString(im(i%500) + "\n")
	}
	led := NewMemLedger()
	led.Add(tac, 1, Bound)
	x := NewIndex()
	led.Load(context.Background(), x)
	var sum Summary
	dir := t.TempDir()
	dupF, _ := newCSVFile(dir, "d", "h")
	malF, _ := newCSVFile(dir, "m", "h")
	otherF, _ := newCSVFile(dir, "o", "h")
	defer dupF.abort()
	defer malF.abort()
	defer otherF.abort()
	data := sb.String()
	allocs := testing.AllocsPerRun(3, func() {
		in := &Input{Reader: strings.NewReader(data)}
		if err := scan(context.Background(), x, in, Options{Format: FormatLines}, &sum, dupF, malF, otherF); err != nil {
			t.Fatal(err)
		}
	})
	// The line reader's buffer and the first seen bitset, nothing per line.
	if allocs > 10 {
		t.Fatalf("%v allocations for 20,000 lines", allocs)
	}
}

func FuzzScan(f *testing.F) {
	f.Add([]byte("approved_imei,make\n" + im(1) + ",x\n"))
	f.Add([]byte("\xef\xbb\xbf" + im(1) + "\r\n\r\n0x1F\n12345678901234567\n"))
	f.Add([]byte("\"" + im(2) + "\",\"a,b\"\n" + im(2) + "\n"))
	f.Add([]byte("approved_imei,model\n" + im(1) + ",\"a\r\nb\"\n" + im(2) + ",\"x\n" + im(1) + ",\"\"\"\n\"\"\"\n"))
	f.Add([]byte("device_id,approved_imei\nQCOLLQ2DXQ2D1," + im(1) + "\n\"a,\"\"b\"," + im(1) + "\nq," + im14(1) + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		led := NewMemLedger()
		led.Add(tac, 1, Bound)
		led.Add(tac, 2, Voided)
		in := &Input{Reader: bytes.NewReader(data), Name: "fuzz"}
		out := t.TempDir()
		sum, err := Run(context.Background(), led, in, Options{OutDir: out})
		if err != nil {
			t.Fatal(err)
		}
		ours := sum.RegisterRows - sum.Malformed - sum.ForeignTACRows - sum.DuplicatesInRegister
		if ours < 0 || sum.Matched+sum.StatusMismatch+sum.UnknownToManufacturer != ours {
			t.Fatalf("lines not accounted for: %+v", sum)
		}
		// One well-formed CSV row of four fields per duplicate.
		r := csv.NewReader(strings.NewReader(readFile(t, out, FileDuplicates)))
		r.FieldsPerRecord = 4
		recs, err := r.ReadAll()
		if err != nil || int64(len(recs)-1) != sum.DuplicatesInRegister {
			t.Fatalf("%s: %d rows, %v; %d duplicates", FileDuplicates, len(recs)-1, err, sum.DuplicatesInRegister)
		}
	})
}

var _ Ledger = DBLedger{}
var _ Ledger = (*MemLedger)(nil)
var _ = store.SQLite

// BenchmarkScan measures the register parser and bitset marking alone, on
// 1,000,000 in-memory lines (one TAC). Run: go test -bench Scan -run '^$'.
func BenchmarkScan(b *testing.B) {
	var sb strings.Builder
	for i := uint32(0); i < 1_000_000; i++ {
		sb.WriteString(im((i * 7919) % 1_000_000))
		sb.WriteByte('\n')
	}
	data := sb.String()
	led := NewMemLedger()
	led.Add(tac, 0, Bound)
	dir := b.TempDir()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		x := NewIndex()
		led.Load(context.Background(), x)
		var sum Summary
		dupF, _ := newCSVFile(dir, "d", "h")
		malF, _ := newCSVFile(dir, "m", "h")
		otherF, _ := newCSVFile(dir, "o", "h")
		if err := scan(context.Background(), x, &Input{Reader: strings.NewReader(data)}, Options{Format: FormatLines}, &sum, dupF, malF, otherF); err != nil {
			b.Fatal(err)
		}
		dupF.abort()
		malF.abort()
		otherF.abort()
	}
	b.ReportMetric(float64(1_000_000*b.N)/b.Elapsed().Seconds(), "lines/s")
}

// runDIRBS reconciles the DIRBS file content against a ledger of
// ledgerRows on dialect d and returns the summary and the output directory.
func runDIRBS(t *testing.T, d store.Dialect, content string) (Summary, string) {
	t.Helper()
	db := storetest.Open(t, d)
	registertest.Seed(t, db, tac, ledgerRows)
	in, err := OpenInput(writeFile(t, "list.csv", content))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out := t.TempDir()
	sum, err := Run(context.Background(), DBLedger{DB: db}, in, Options{Format: FormatDIRBS, OutDir: out})
	if err != nil {
		t.Fatal(err)
	}
	return sum, out
}

// TestRegisteredToOtherDevice: an IMEI bound here that the register holds
// once, under another device's id (a clone registered instead of ours),
// is found: no other category shows it (it is "matched" by IMEI alone).
// Every row naming another device is listed, also one whose id is not one
// tacline writes; rows naming the right device, and IMEIs not bound here,
// are not.
func TestRegisteredToOtherDevice(t *testing.T) {
	dirbs := "approved_imei,make,model,status,model_number,brand_name,device_type,radio_interface,device_id\r\n" +
		im14(1) + ",Acme,P,whitelist,,Acme,,,D1\r\n" +
		im14(2) + ",Acme,P,whitelist,,Acme,,,CLONE7\r\n" + // the register has only the clone's copy
		im14(3) + ",Acme,P,whitelist,,Acme,,,d3\r\n" + // ours, the id's case folded by the register
		im14(4) + ",Acme,P,whitelist,,Acme,,,no such id!\r\n" + // not an id tacline writes
		im14(5) + ",Acme,P,whitelist,,Acme,,,OTHER\r\n" // voided here: a status mismatch, not this
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			got, out := runDIRBS(t, d, dirbs)
			if got.RegisteredToOtherDevice != 2 || got.MissingInRegister != 0 || got.DuplicatesInRegister != 0 || got.StatusMismatch != 1 {
				t.Fatalf("summary %+v: want 2 rows registered to another device, nothing missing or duplicated, 1 status mismatch", got)
			}
			checkFile(t, out, FileOtherDevice, "3,"+im14(2)+",CLONE7,CLONE7", "5,"+im14(4)+",no such id!,")
		})
	}
}

// TestQuotedLineBreak: a DIRBS row whose quoted field holds a line break
// (CRLF or LF) is one register row, reported at its first line; the rows
// after it keep their line numbers. A stray quote that nothing closes is
// its own line and swallows none after it.
func TestQuotedLineBreak(t *testing.T) {
	dirbs := "approved_imei,make,model,status,model_number,brand_name,device_type,radio_interface,device_id\r\n" +
		im14(1) + ",Acme,\"Phone\r\n1\",whitelist,,Acme,,,D1\r\n" + // lines 2-3
		im14(2) + ",\"Acme \"\"Labs\"\"\nEast\",P,whitelist,,Acme,,,D2\r\n" + // lines 4-5
		im14(1) + ",Acme,P,whitelist,,Acme,,,D1\r\n" + // line 6: a duplicate
		im14(5) + ",Acme,\"P,whitelist,,Acme,,,D5\r\n" + // line 7: a stray quote
		im14(4) + ",Acme,P,whitelist,,Acme,,,D4\r\n" + // line 8
		im14(6) + ",Acme,\"P\nQ\",whitelist,,Acme,,,D6" // lines 9-10, no end
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			got, out := runDIRBS(t, d, dirbs)
			want := Summary{RegisterRows: 6, Matched: 3, DuplicatesInRegister: 1, MissingInRegister: 1, StatusMismatch: 2,
				LedgerIMEIs: got.LedgerIMEIs, TACs: got.TACs}
			if got != want {
				t.Fatalf("summary %+v\nwant    %+v", got, want)
			}
			checkFile(t, out, FileDuplicates, "6,"+im14(1)+",D1,D1")
			checkFile(t, out, FileMalformed)
			checkFile(t, out, FileOtherDevice)
		})
	}
}

// TestLineReaderRecords: the records and first line numbers the reader
// yields.
func TestLineReaderRecords(t *testing.T) {
	long := strings.Repeat("y", maxLine)
	for _, tc := range []struct {
		name, in string
		want     []string // record@line
	}{
		{"plain", "a\nb\r\nc", []string{"a@1", "b@2", "c@3"}},
		{"quoted LF", "a,\"x\ny\",b\nc\n", []string{"a,\"x\ny\",b@1", "c@3"}},
		{"quoted CRLF", "a,\"x\r\ny\"\r\nc\r\n", []string{"a,\"x\r\ny\"@1", "c@3"}},
		{"several breaks", "\"1\n2\n3\"\nz\n", []string{"\"1\n2\n3\"@1", "z@4"}},
		{"doubled quotes", "\"a \"\"q\"\"\nb\"\nz\n", []string{"\"a \"\"q\"\"\nb\"@1", "z@3"}},
		{"closed on the last line", "a,\"x\ny\"", []string{"a,\"x\ny\"@1"}},
		{"never closed", "a,\"x\nb\nc\n", []string{"a,\"x@1", "b@2", "c@3"}},
		{"bare quote in the field", "a,\"x\nb\"c\nd\n", []string{"a,\"x@1", "b\"c@2", "d@3"}},
		{"closed too far", "a,\"x\n" + long + "\"\nc\n", []string{"a,\"x@1", "long@2", "c@3"}},
		{"byte order mark", "\xef\xbb\xbf\"h\nx\"\nz", []string{"\"h\nx\"@1", "z@3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lr := newLineReader(strings.NewReader(tc.in))
			var got []string
			for {
				rec, err := lr.next()
				if err != nil {
					break
				}
				s := string(rec)
				if lr.long {
					s = "long"
				}
				got = append(got, fmt.Sprintf("%s@%d", s, lr.n))
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("records %q\nwant    %q", got, tc.want)
			}
			if lr.read != int64(len(tc.in)) {
				t.Fatalf("read %d bytes of %d", lr.read, len(tc.in))
			}
		})
	}
}

// TestRunOutputErrors: a reconciliation whose output cannot be written
// fails with output_failed naming the file (and the out field for the
// directory), not invalid_input: the register's file was not at fault.
// The failures are the filesystem's own: a directory where a file goes, a
// file where the directory goes, and /dev/full (ENOSPC on every write)
// under a category file's name.
func TestRunOutputErrors(t *testing.T) {
	led := NewMemLedger()
	for snr := uint32(1); snr <= 5; snr++ {
		led.Add(tac, snr, Bound)
	}
	input := func() *Input {
		// One row seen twice (a duplicate), rows 1-3: 4 and 5 are missing.
		return &Input{Reader: strings.NewReader(im(1) + "\n" + im(1) + "\n" + im(2) + "\n" + im(3) + "\n"), Name: "reg"}
	}
	for _, tc := range []struct {
		name, file, field string
		plant             func(t *testing.T, out string) string // returns OutDir
	}{
		{"the output directory is a file", "", "out", func(t *testing.T, out string) string {
			p := filepath.Join(out, "file")
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}},
		{"a directory where duplicates go", FileDuplicates, "", func(t *testing.T, out string) string {
			return out
		}},
		{"the disk full under missing", FileMissing, "", func(t *testing.T, out string) string {
			return out
		}},
		{"a directory where the summary goes", FileSummary, "", func(t *testing.T, out string) string {
			return out
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := tc.plant(t, t.TempDir())
			switch tc.file {
			case FileMissing:
				if err := os.Symlink("/dev/full", filepath.Join(out, tc.file)); err != nil {
					t.Fatal(err)
				}
			case "":
			default:
				if err := os.Mkdir(filepath.Join(out, tc.file), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Run(context.Background(), led, input(), Options{OutDir: out})
			e, ok := tacerr.As(err)
			if !ok || e.Code != tacerr.OutputFailed || e.Field != tc.field || (tc.file != "" && !strings.Contains(err.Error(), tc.file)) {
				t.Fatalf("Run = %v, want output_failed naming %q (field %q)", err, tc.file, tc.field)
			}
		})
	}
	// The same run with a writable directory succeeds (so the failures
	// above are the output's).
	sum, err := Run(context.Background(), led, input(), Options{OutDir: t.TempDir()})
	if err != nil || sum.MissingInRegister != 2 || sum.DuplicatesInRegister != 1 {
		t.Fatalf("Run = %+v, %v", sum, err)
	}
}
