// Package reconcile is the regulator's check of a national register against
// the manufacturer's ledger: which IMEIs are bound here but missing there,
// present there under our TACs but never allocated here (replicated by
// someone else), voided or revoked here but still registered there,
// duplicated there, and which register lines are not IMEIs at all.
//
// It is built for national scale. The ledger side is read in one streaming
// query into one bitset per TAC and state (a TAC holds 1,000,000 serials,
// so a bitset is 125 KB whatever the ledger's size); the register file is
// streamed line by line without allocating for valid lines, marking a
// "seen" bitset per TAC; categories come from bit operations. Memory is
// bounded by the number of the manufacturer's TACs, never by the number of
// lines or IMEIs.
//
// The package promises: every input row is accounted for exactly once (a
// register row of ours, a foreign-TAC row, or malformed with its line
// number); a row is a line, or the lines of a quoted CSV field that holds
// line breaks (RFC 4180, as DIRBS-Core reads its lists), numbered by its
// first line; a malformed line is never fatal; the category files list IMEIs
// in ascending order, except duplicates and malformed lines, which come in
// file order. A duplicate row names the device_id the register holds that
// copy under (DIRBS files) and the device serial it maps back to
// (wire.DeviceSerial), so a clone's devices can be told apart. In a file
// with device ids, a row of an IMEI bound here whose device id does not
// map back to the device it is bound to is listed (in file order) as
// registered to another device: a copy the register may hold instead of
// ours, which no other category shows when it is the only row.
package reconcile

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/internal/spreadsheet"
	"github.com/tacline/tacline/register/wire"
	"github.com/tacline/tacline/tacerr"
)

// Summary is the result of a run, as summary.json and --json print it.
type Summary struct {
	MissingInRegister     int64 `json:"missing_in_register"`
	UnknownToManufacturer int64 `json:"unknown_to_manufacturer"`
	StatusMismatch        int64 `json:"status_mismatch"`
	DuplicatesInRegister  int64 `json:"duplicates_in_register"`
	// RegisteredToOtherDevice counts register rows that name, for an IMEI
	// bound here, a device other than the one it is bound to.
	RegisteredToOtherDevice int64 `json:"registered_to_other_device"`
	Malformed               int64 `json:"malformed"`
	ForeignTACRows          int64 `json:"foreign_tac_rows"`
	Matched                 int64 `json:"matched"`       // bound here and registered there
	RegisterRows            int64 `json:"register_rows"` // rows read, header excluded
	LedgerIMEIs             int64 `json:"ledger_imeis"`  // ledger rows, any state
	TACs                    int   `json:"tacs"`          // the manufacturer's TACs
}

// Category file names in the output directory.
const (
	FileMissing     = "missing_in_register.csv"
	FileUnknown     = "unknown_to_manufacturer.csv"
	FileMismatch    = "status_mismatch.csv"
	FileDuplicates  = "duplicates_in_register.csv"
	FileOtherDevice = "registered_to_other_device.csv"
	FileMalformed   = "malformed.csv"
	FileSummary     = "summary.json"
)

// Options tune a run.
type Options struct {
	Format Format
	// OutDir receives one CSV per category and summary.json; created if
	// missing.
	OutDir string
	// Progress, if set, is called with the bytes read so far, every few
	// megabytes and once at the end.
	Progress func(read int64)
}

// Run reconciles the register file in against the ledger.
func Run(ctx context.Context, ledger Ledger, in *Input, opt Options) (Summary, error) {
	var sum Summary
	if opt.OutDir == "" {
		return sum, tacerr.Field(tacerr.InvalidInput, "out", "is required: the directory for the category files")
	}
	if err := os.MkdirAll(opt.OutDir, 0o755); err != nil {
		return sum, tacerr.Field(tacerr.OutputFailed, "out", "cannot create the output directory %s: %v", opt.OutDir, err)
	}
	x := NewIndex()
	if err := ledger.Load(ctx, x); err != nil {
		return sum, err
	}
	sum.LedgerIMEIs, sum.TACs = x.ledger, len(x.tacs)

	dupF, err := newCSVFile(opt.OutDir, FileDuplicates, "line,imei14,device_id,device_serial")
	if err != nil {
		return sum, err
	}
	defer dupF.abort()
	malF, err := newCSVFile(opt.OutDir, FileMalformed, "line,reason,content")
	if err != nil {
		return sum, err
	}
	defer malF.abort()
	otherF, err := newCSVFile(opt.OutDir, FileOtherDevice, "line,imei14,device_id,device_serial")
	if err != nil {
		return sum, err
	}
	defer otherF.abort()
	if err := scan(ctx, x, in, opt, &sum, dupF, malF, otherF); err != nil {
		return sum, err
	}
	if err := otherF.close(); err != nil {
		return sum, err
	}
	if err := dupF.close(); err != nil {
		return sum, err
	}
	if err := malF.close(); err != nil {
		return sum, err
	}
	if err := writeCategories(x, opt.OutDir, &sum); err != nil {
		return sum, err
	}
	b, _ := json.MarshalIndent(sum, "", "  ")
	if err := os.WriteFile(filepath.Join(opt.OutDir, FileSummary), append(b, '\n'), 0o644); err != nil {
		return sum, tacerr.Wrap(tacerr.OutputFailed, err, "write %s", FileSummary)
	}
	return sum, nil
}

// scan streams the register file, marking seen bits.
func scan(ctx context.Context, x *Index, in *Input, opt Options, sum *Summary, dupF, malF, otherF *csvFile) error {
	lr := newLineReader(in)
	col := -1    // the IMEI column of a CSV; -1: one IMEI per line
	devCol := -1 // the device_id column of a CSV, if any
	headerDone := opt.Format == FormatLines
	var nextProgress int64 = 8 << 20
	var num [24]byte
	malformed := func(reason string, line []byte) error {
		sum.Malformed++
		return malF.w.Write([]string{strconv.FormatInt(lr.n, 10), reason, noFormula(printable(line))})
	}
	for {
		line, err := lr.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return err
		}
		if err := unreadable(line, lr.n, in.Name); err != nil {
			return err
		}
		if lr.read >= nextProgress {
			if ctx.Err() != nil {
				return tacerr.Wrap(tacerr.Unavailable, ctx.Err(), "reconciliation interrupted at line %d", lr.n)
			}
			if opt.Progress != nil {
				opt.Progress(lr.read)
			}
			nextProgress = lr.read + 8<<20
		}
		if !headerDone {
			headerDone = true
			if k, ok := headerColumn(line); ok {
				col, devCol = k, deviceColumn(line)
				continue
			}
			if opt.Format == FormatDIRBS {
				return tacerr.Field(tacerr.InvalidInput, "register", "line 1 of %s is not a DIRBS header: it must name an approved_imei column", in.Name)
			}
		}
		sum.RegisterRows++
		if lr.long {
			if err := malformed("line longer than 64 KiB", line); err != nil {
				return err
			}
			continue
		}
		f := line
		if col >= 0 {
			var ok bool
			if f, ok = field(line, col); !ok {
				if err := malformed("no field "+strconv.Itoa(col+1)+" (the IMEI column)", line); err != nil {
					return err
				}
				continue
			}
		} else {
			f = trimField(f)
		}
		if len(f) == 0 {
			if err := malformed("empty: no IMEI", line); err != nil {
				return err
			}
			continue
		}
		m, perr := imei.ParseBytes(f)
		if perr != nil {
			if err := malformed(perr.Error(), line); err != nil {
				return err
			}
			continue
		}
		t := x.lookup(m.TAC())
		if t == nil {
			sum.ForeignTACRows++
			continue
		}
		if devCol >= 0 && t.devices != nil && t.devices[m.SNR()] != 0 { // set for bound IMEIs only
			// The register holds this row under a device id: it must be
			// the id of the device the IMEI is bound to here. Another one
			// is a copy registered for someone else's device (a clone the
			// register has, perhaps instead of ours).
			var id, serial string
			if f, ok := field(line, devCol); ok {
				id = string(f)
				serial, _ = wire.DeviceSerial(id)
			}
			if serial == "" || deviceHash([]byte(serial)) != t.devices[m.SNR()] {
				sum.RegisteredToOtherDevice++
				if err := otherF.w.Write([]string{strconv.FormatInt(lr.n, 10), m.Digits14(), noFormula(id), noFormula(serial)}); err != nil {
					return tacerr.Wrap(tacerr.OutputFailed, err, "write %s", FileOtherDevice)
				}
			}
		}
		if t.seen == nil {
			t.seen = new(bitset)
		}
		if t.seen.has(m.SNR()) {
			sum.DuplicatesInRegister++
			// The device the register holds this copy under, and the
			// serial its id stands for (empty when the id is not one
			// tacline writes).
			var err error
			if devCol >= 0 {
				// Quoted fields: the writer for the whole run (files
				// without a device column stay allocation-free below).
				var id, serial string
				if f, ok := field(line, devCol); ok {
					id = string(f)
					serial, _ = wire.DeviceSerial(id)
				}
				err = dupF.w.Write([]string{strconv.FormatInt(lr.n, 10), m.Digits14(), noFormula(id), noFormula(serial)})
			} else {
				b := strconv.AppendInt(num[:0], lr.n, 10)
				b = append(b, ',')
				b = m.AppendDigits14(b)
				b = append(b, ",,\n"...)
				_, err = dupF.raw.Write(b)
			}
			if err != nil {
				return tacerr.Wrap(tacerr.OutputFailed, err, "write %s", FileDuplicates)
			}
			continue
		}
		t.seen.set(m.SNR())
	}
	if opt.Progress != nil {
		opt.Progress(lr.read)
	}
	return nil
}

// noFormula returns a cell taken from the register file as a spreadsheet
// shows it as text: one that starts with =, +, - or @ (a formula to
// spreadsheets, which a hostile file could use to run commands or leak
// data on the regulator's desktop), or with a tab or carriage return
// (which some take as a formula's start too), gets a leading apostrophe.
func noFormula(s string) string {
	if spreadsheet.FormulaStart(s) {
		return "'" + s
	}
	return s
}

// writeCategories derives the ledger-side categories from the bitsets.
func writeCategories(x *Index, dir string, sum *Summary) error {
	tacs := make([]uint32, 0, len(x.tacs))
	for tac := range x.tacs {
		tacs = append(tacs, tac)
	}
	slices.Sort(tacs)
	files := []struct {
		name, header string
		count        *int64
		// word returns the category's bits in word i of t's sets.
		word func(t *tacSets, i int) uint64
	}{
		{FileMissing, "imei,imei14,tac,ledger_state", &sum.MissingInRegister, func(t *tacSets, i int) uint64 {
			return w(t.bound, i) &^ w(t.seen, i)
		}},
		{FileUnknown, "imei,imei14,tac", &sum.UnknownToManufacturer, func(t *tacSets, i int) uint64 {
			return w(t.seen, i) &^ (w(t.bound, i) | w(t.voided, i) | w(t.revoked, i) | w(t.reserved, i))
		}},
		{FileMismatch, "imei,imei14,tac,ledger_state", &sum.StatusMismatch, func(t *tacSets, i int) uint64 {
			return w(t.seen, i) & (w(t.voided, i) | w(t.revoked, i) | w(t.reserved, i))
		}},
	}
	for _, f := range files {
		cf, err := newCSVFile(dir, f.name, f.header)
		if err != nil {
			return err
		}
		withState := f.name != FileUnknown
		var buf [64]byte
		for _, tac := range tacs {
			t := x.tacs[tac]
			for i := 0; i < words; i++ {
				v := f.word(t, i)
				for v != 0 {
					snr := uint32(i*64 + bits.TrailingZeros64(v))
					v &= v - 1
					*f.count++
					m, _ := imei.New(tac, snr)
					b := m.Append(buf[:0])
					b = append(b, ',')
					b = m.AppendDigits14(b)
					b = append(b, ',')
					b = append(b, m.TACString()...)
					if withState {
						b = append(b, ',')
						b = append(b, t.state(snr).String()...)
					}
					b = append(b, '\n')
					if _, err := cf.raw.Write(b); err != nil {
						cf.abort()
						return tacerr.Wrap(tacerr.OutputFailed, err, "write %s", f.name)
					}
				}
			}
		}
		if err := cf.close(); err != nil {
			return err
		}
	}
	for _, t := range x.tacs {
		if t.seen == nil || t.bound == nil {
			continue
		}
		for i := 0; i < words; i++ {
			sum.Matched += int64(bits.OnesCount64(t.seen[i] & t.bound[i]))
		}
	}
	return nil
}

// w returns word i of b, or 0 for a set never allocated.
func w(b *bitset, i int) uint64 {
	if b == nil {
		return 0
	}
	return b[i]
}

// csvFile is one output file, written through a buffer.
type csvFile struct {
	f    *os.File
	raw  *bufio.Writer
	w    *csv.Writer // for quoted fields (malformed lines)
	name string
}

func newCSVFile(dir, name, header string) (*csvFile, error) {
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return nil, tacerr.Wrap(tacerr.OutputFailed, err, "create %s", name)
	}
	raw := bufio.NewWriterSize(f, 1<<20)
	raw.WriteString(header + "\n")
	return &csvFile{f: f, raw: raw, w: csv.NewWriter(raw), name: name}, nil
}

func (c *csvFile) close() error {
	if c.f == nil {
		return nil
	}
	c.w.Flush()
	err := c.w.Error()
	if err == nil {
		err = c.raw.Flush()
	}
	if cerr := c.f.Close(); err == nil {
		err = cerr
	}
	c.f = nil
	if err != nil {
		return tacerr.Wrap(tacerr.OutputFailed, err, "write %s", c.name)
	}
	return nil
}

func (c *csvFile) abort() {
	if c.f != nil {
		c.f.Close()
		c.f = nil
	}
}
