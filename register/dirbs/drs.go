package dirbs

import (
	"bufio"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// MaxIMEIsPerDevice is the most IMEIs a DRS row holds.
const MaxIMEIsPerDevice = imei.MaxPerDevice

// DRSFile returns the file of devices with n IMEIs for an export to path:
// "-<n>imei" before its extension (drs.tsv -> drs-2imei.tsv).
func DRSFile(path string, n int) string {
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + "-" + strconv.Itoa(n) + "imei" + ext
}

// ExportDRS writes the DIRBS device-registration bulk upload: TSV without
// header, one bound device per row, its IMEIs (15 digits) one per column.
// A DRS upload declares its IMEIs per device and every row must have that
// many columns, so devices are split by their number of IMEIs: one file per
// number present, DRSFile(path, n), each recorded as its own export (in
// ascending n). No bound device, no file: the file of a number with no
// device that an earlier export to path left is removed, so path's files
// are this export's. models, if not empty, keeps devices of those TAC
// model names. Every file is complete or absent.
func ExportDRS(ctx context.Context, db *store.DB, path string, models []string) ([]Export, error) {
	hw, err := highWater(ctx, db)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Dir(path)); err != nil {
		return nil, tacerr.Wrap(tacerr.InvalidInput, err, "create %s (does the directory exist?)", path)
	}
	var files [MaxIMEIsPerDevice + 1]*drsFile
	defer func() {
		for _, f := range files {
			if f != nil {
				f.af.abort()
			}
		}
	}()
	var cur string
	var group []imei.IMEI
	flush := func() error {
		if len(group) == 0 {
			return nil
		}
		n := len(group)
		if files[n] == nil {
			af, err := createAtomic(DRSFile(path, n))
			if err != nil {
				return err
			}
			files[n] = &drsFile{af: af, w: bufio.NewWriterSize(af, 1<<16), e: Export{Kind: KindDRS, File: af.target, HighWater: hw, IMEIsPerDevice: n}}
		}
		f := files[n]
		var buf [15]byte
		for i, m := range group {
			if i > 0 {
				f.w.WriteByte('\t')
			}
			f.w.Write(m.Append(buf[:0]))
		}
		f.w.WriteByte('\n')
		f.e.Rows++
		group = group[:0]
		return nil
	}
	err = db.BoundDeviceIMEIs(ctx, models, func(device string, n int64) error {
		m, err := imei.FromUint64(uint64(n))
		if err != nil {
			return tacerr.Wrap(tacerr.LedgerInvariant, err, "ledger IMEI %d", n)
		}
		if device != cur {
			if err := flush(); err != nil {
				return err
			}
			cur = device
		}
		if len(group) == MaxIMEIsPerDevice {
			return tacerr.New(tacerr.LedgerInvariant, "device %q has more than %d bound IMEIs: a DRS row holds 1 to 5", device, MaxIMEIsPerDevice)
		}
		group = append(group, m)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := flush(); err != nil {
		return nil, err
	}
	// Every file is written out before the first is renamed into place.
	for _, f := range files {
		if f != nil {
			if err := f.w.Flush(); err != nil {
				return nil, writeErr(err)
			}
		}
	}
	var out []Export
	for _, f := range files {
		if f == nil {
			continue
		}
		if err := f.af.commit(); err != nil {
			return out, err
		}
		if err := record(ctx, db, &f.e); err != nil {
			return out, err
		}
		out = append(out, f.e)
	}
	// The export is the whole set of path's files: a number of IMEIs with
	// no bound device now has no file, not an earlier export's (whose
	// devices may have been voided since).
	for n, f := range files {
		if n == 0 || f != nil {
			continue
		}
		if err := os.Remove(DRSFile(path, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return out, tacerr.Wrap(tacerr.InvalidInput, err, "remove %s, left by an earlier export to %s", DRSFile(path, n), path)
		}
	}
	return out, nil
}

// drsFile is one DRS output file (devices with one number of IMEIs).
type drsFile struct {
	af *atomicFile
	w  *bufio.Writer
	e  Export
}
