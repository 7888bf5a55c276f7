// Package reconcilebench measures reconciliation on a synthetic ledger and
// register file whose discrepancies are known, against a sort -u + comm
// baseline on the same data.
package reconcilebench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/register/reconcile"
	"github.com/tacline/tacline/tacerr"
)

// BenchOptions configure a reconciliation benchmark.
type BenchOptions struct {
	Lines    int64  // register lines to generate (at least)
	Dir      string // where the generated files go (removed afterwards)
	Baseline bool   // also time LC_ALL=C sort -u + comm on the same data
}

// BenchResult is the outcome of Bench.
type BenchResult struct {
	Lines            int64             `json:"lines"`
	Expected         reconcile.Summary `json:"expected"`
	Got              reconcile.Summary `json:"got"`
	CountsOK         bool              `json:"counts_ok"`
	Ledger           string            `json:"ledger"`
	GenerateSeconds  float64           `json:"generate_seconds"`
	ReconcileSeconds float64           `json:"reconcile_seconds"`
	LinesPerSecond   float64           `json:"lines_per_second"`
	PeakRSSBytes     int64             `json:"peak_rss_bytes"`
	BaselineCommand  string            `json:"baseline_command,omitempty"`
	BaselineSeconds  float64           `json:"baseline_seconds,omitempty"`
	Speedup          float64           `json:"speedup,omitempty"`
	CPUs             int               `json:"cpus"`
}

// benchTACBase is the first synthetic TAC (reporting body 00, kept for
// tests by GSMA TS.06); benchForeignTAC is a TAC that is not ours.
const (
	benchTACBase    = 1_234_500
	benchForeignTAC = 99_000_001
)

// Generate writes a synthetic register file of at least lines lines to
// regPath and returns the matching ledger and the counts a correct
// reconciliation must find. If ledPath is not empty, the ledger's bound
// IMEIs are also written there, one per line, for the sort+comm baseline.
//
// The layout, per serial number s of each synthetic TAC (walked in a
// scattered order, s = i*7919+13 mod 1e6), by h = s mod 1000: h < 900
// bound (absent from the register when h mod 100 = 7, listed twice when
// h = 11); 900-919 voided and 920-939 revoked (the first 5 of each still
// registered); 940-949 reserved; 950-959 registered but never allocated;
// the rest unused. Every 997th line is followed by a malformed one (empty,
// text, 17 digits, hex, wrong check digit in turn), every 499th by a row
// of a foreign TAC.
func Generate(lines int64, regPath, ledPath string) (*reconcile.MemLedger, reconcile.Summary, int64, error) {
	led := reconcile.NewMemLedger()
	var exp reconcile.Summary
	rf, err := os.Create(regPath)
	if err != nil {
		return nil, exp, 0, err
	}
	defer rf.Close()
	rw := bufio.NewWriterSize(rf, 4<<20)
	var lw *bufio.Writer
	if ledPath != "" {
		lf, err := os.Create(ledPath)
		if err != nil {
			return nil, exp, 0, err
		}
		defer lf.Close()
		lw = bufio.NewWriterSize(lf, 4<<20)
	}
	var n, foreignSNR int64
	var buf [32]byte
	bad := [][]byte{{}, []byte("not an imei"), []byte("12345678901234567"), []byte("0123ABCD456789F"), nil}
	emit := func(m imei.IMEI) {
		rw.Write(append(m.Append(buf[:0]), '\n'))
		n++
		if n%997 == 0 {
			b := bad[(n/997)%5]
			if b == nil { // wrong check digit
				b = m.Append(buf[:0])
				b[14] = '0' + (b[14]-'0'+1)%10
			}
			rw.Write(b)
			rw.WriteByte('\n')
			n++
			exp.Malformed++
		}
		if n%499 == 0 {
			f, _ := imei.New(benchForeignTAC, uint32(foreignSNR%imei.SNRsPerTAC))
			foreignSNR++
			rw.Write(append(f.Append(buf[:0]), '\n'))
			n++
			exp.ForeignTACRows++
		}
	}
	for k := uint32(0); n < lines; k++ {
		tac := benchTACBase + k
		exp.TACs++
		led.Add(tac, 0, reconcile.Absent)
		for i := uint64(0); i < imei.SNRsPerTAC && n < lines; i++ {
			snr := uint32((i*7919 + 13) % imei.SNRsPerTAC)
			m, _ := imei.New(tac, snr)
			h := snr % 1000
			switch {
			case h < 900:
				led.Add(tac, snr, reconcile.Bound)
				exp.LedgerIMEIs++
				if lw != nil {
					lw.Write(append(m.Append(buf[:0]), '\n'))
				}
				if h%100 == 7 {
					exp.MissingInRegister++
					continue
				}
				exp.Matched++
				emit(m)
				if h == 11 {
					emit(m)
					exp.DuplicatesInRegister++
				}
			case h < 940:
				st := reconcile.Voided
				if h >= 920 {
					st = reconcile.Revoked
				}
				led.Add(tac, snr, st)
				exp.LedgerIMEIs++
				if h%20 < 5 {
					exp.StatusMismatch++
					emit(m)
				}
			case h < 950:
				led.Add(tac, snr, reconcile.Reserved)
				exp.LedgerIMEIs++
			case h < 960:
				exp.UnknownToManufacturer++
				emit(m)
			}
		}
	}
	exp.RegisterRows = n
	if err := rw.Flush(); err != nil {
		return nil, exp, 0, err
	}
	if lw != nil {
		if err := lw.Flush(); err != nil {
			return nil, exp, 0, err
		}
	}
	return led, exp, n, nil
}

// Bench generates a synthetic ledger and register file, reconciles them,
// checks the counts and, if asked, times the sort+comm baseline.
func Bench(ctx context.Context, opt BenchOptions) (BenchResult, error) {
	res := BenchResult{CPUs: runtime.NumCPU(),
		Ledger: "synthetic, in memory (reconcile.MemLedger: bitsets fed to the engine through the reconcile.Ledger interface the database path uses)"}
	if opt.Lines < 1 {
		return res, tacerr.Field(tacerr.InvalidInput, "lines", "must be at least 1")
	}
	dir, err := os.MkdirTemp(opt.Dir, "tacline-bench-reconcile-")
	if err != nil {
		return res, tacerr.Wrap(tacerr.InvalidInput, err, "create benchmark directory")
	}
	defer os.RemoveAll(dir)
	reg := filepath.Join(dir, "register.txt")
	ledPath := ""
	if opt.Baseline {
		ledPath = filepath.Join(dir, "ledger.txt")
	}
	t0 := time.Now()
	led, exp, n, err := Generate(opt.Lines, reg, ledPath)
	if err != nil {
		return res, tacerr.Wrap(tacerr.Internal, err, "generate benchmark data")
	}
	res.GenerateSeconds = time.Since(t0).Seconds()
	res.Lines, res.Expected = n, exp

	in, err := reconcile.OpenInput(reg)
	if err != nil {
		return res, err
	}
	t0 = time.Now()
	got, err := reconcile.Run(ctx, led, in, reconcile.Options{Format: reconcile.FormatLines, OutDir: filepath.Join(dir, "out")})
	in.Close()
	if err != nil {
		return res, err
	}
	res.ReconcileSeconds = time.Since(t0).Seconds()
	res.LinesPerSecond = float64(n) / res.ReconcileSeconds
	res.Got = got
	res.CountsOK = got == exp
	res.PeakRSSBytes = peakRSS()
	if opt.Baseline {
		res.BaselineCommand = "LC_ALL=C sort -u -o reg.sorted register.txt && LC_ALL=C sort -u -o led.sorted ledger.txt && LC_ALL=C comm -3 led.sorted reg.sorted > diff.txt"
		cmd := exec.CommandContext(ctx, "sh", "-c", res.BaselineCommand)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "LC_ALL=C")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		t0 = time.Now()
		if err := cmd.Run(); err != nil {
			return res, tacerr.Wrap(tacerr.Internal, err, "baseline: %s", stderr.String())
		}
		res.BaselineSeconds = time.Since(t0).Seconds()
		res.Speedup = res.BaselineSeconds / res.ReconcileSeconds
	}
	if !res.CountsOK {
		return res, tacerr.New(tacerr.Internal, "reconciliation counts differ from the generated discrepancies: got %+v, want %+v", got, exp)
	}
	return res, nil
}

// peakRSS returns the process's peak resident set size (VmHWM).
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("VmHWM:")); ok {
			f := bytes.Fields(v)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(string(f[0]), 10, 64)
				if err == nil {
					return kb * 1024
				}
			}
		}
	}
	return -1
}

// String is a one-line human summary.
func (r BenchResult) String() string {
	s := fmt.Sprintf("%d lines reconciled in %.2fs (%.0f lines/s), peak RSS %d MiB, counts ok: %v",
		r.Lines, r.ReconcileSeconds, r.LinesPerSecond, r.PeakRSSBytes>>20, r.CountsOK)
	if r.BaselineSeconds > 0 {
		s += fmt.Sprintf("; baseline sort -u + comm %.2fs (%.1fx)", r.BaselineSeconds, r.Speedup)
	}
	return s
}
