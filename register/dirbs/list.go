package dirbs

import (
	"archive/zip"
	"bufio"
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/register/wire"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// listRow is one registration list row. device is the device serial in a
// full list, the device id the outbox reported in a delta (deviceID says
// which).
type listRow struct {
	imei14                                    int64
	device, brand, model, number, kind, radio string
	deviceID                                  bool
}

func (r listRow) write(w *bufio.Writer, changeType string) error {
	m, err := imei.FromUint64(uint64(r.imei14))
	if err != nil {
		return tacerr.Wrap(tacerr.LedgerInvariant, err, "ledger IMEI %d", r.imei14)
	}
	id := r.device
	if !r.deviceID {
		id = wire.DeviceIDOf(r.device, m)
	}
	w.WriteString(m.Digits14())
	for _, f := range []string{r.brand, r.model, "whitelist", r.number, r.brand, r.kind, r.radio, id} {
		w.WriteByte(',')
		w.WriteString(csvField(f))
	}
	if changeType != "" {
		w.WriteByte(',')
		w.WriteString(changeType)
	}
	return w.WriteByte('\n')
}

// ExportRegistrationList writes the DIRBS registration list of every bound
// IMEI to path (a .zip holding one CSV of the same base name) or, when
// deltaSince is not 0, the changes since that export with a change_type
// column (add, remove, update). approved_imei is the 14-digit form.
func ExportRegistrationList(ctx context.Context, db *store.DB, path string, deltaSince int64) (Export, error) {
	e := Export{Kind: KindList, File: path, Since: deltaSince}
	if !strings.EqualFold(filepath.Ext(path), ".zip") {
		return e, tacerr.Field(tacerr.InvalidInput, "output", "%s: a DIRBS registration list is a .zip file", path)
	}
	var since int64
	if deltaSince != 0 {
		e.Kind = KindDelta
		kind, hw, found, err := db.Export(ctx, deltaSince)
		if err != nil {
			return e, err
		}
		if !found {
			return e, tacerr.Field(tacerr.NotFound, "delta-since", "export %d does not exist: give the id of an earlier registration-list export", deltaSince)
		}
		since = hw
		if kind == KindDRS {
			return e, tacerr.Field(tacerr.InvalidInput, "delta-since", "export %d is a DRS file, not a registration list", deltaSince)
		}
		if err := checkRetention(ctx, db, deltaSince, since); err != nil {
			return e, err
		}
	}
	hw, err := highWater(ctx, db)
	if err != nil {
		return e, err
	}
	e.HighWater = hw
	af, err := createAtomic(path)
	if err != nil {
		return e, err
	}
	defer af.abort()
	zw := zip.NewWriter(af)
	inner := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)) + ".csv"
	// The entry's time is the export's (zip.Writer.Create would write the
	// invalid DOS date 0).
	zf, err := zw.CreateHeader(&zip.FileHeader{Name: inner, Method: zip.Deflate, Modified: db.Now()})
	if err != nil {
		return e, tacerr.Wrap(tacerr.InvalidInput, err, "write %s", path)
	}
	bw := bufio.NewWriterSize(zf, 1<<16)
	if deltaSince == 0 {
		e.Rows, err = writeList(ctx, db, bw)
	} else {
		e.Rows, err = writeDelta(ctx, db, bw, since, hw)
	}
	if err != nil {
		return e, err
	}
	if deltaSince != 0 {
		// Retention running meanwhile may have deleted rows of the window
		// before the read saw them: check again after it.
		if err := checkRetention(ctx, db, deltaSince, since); err != nil {
			return e, err
		}
	}
	if err := bw.Flush(); err != nil {
		return e, tacerr.Wrap(tacerr.InvalidInput, err, "write %s", path)
	}
	if err := zw.Close(); err != nil {
		return e, tacerr.Wrap(tacerr.InvalidInput, err, "write %s", path)
	}
	if err := af.commit(); err != nil {
		return e, err
	}
	return e, record(ctx, db, &e)
}

// checkRetention refuses a delta since export id (high-water mark since)
// when retention deleted outbox rows after that mark: the delta would miss
// their events.
func checkRetention(ctx context.Context, db *store.DB, id, since int64) error {
	through, err := prunedThrough(ctx, db)
	if err != nil {
		return err
	}
	if through > since {
		return tacerr.Field(tacerr.InvalidInput, "delta-since",
			"export %d (outbox high-water mark %d) is older than the register outbox retention: events up to outbox id %d were pruned; write a full registration list and take deltas from it", id, since, through)
	}
	return nil
}

func writeList(ctx context.Context, db *store.DB, w *bufio.Writer) (int64, error) {
	w.WriteString(Header + "\n")
	var n int64
	err := db.BoundIMEIs(ctx, func(b store.ListedIMEI) error {
		r := listRow{imei14: b.IMEI14, device: b.DeviceSerial, brand: b.Brand, model: b.Model, number: b.ModelNumber, kind: b.DeviceType, radio: b.Radio}
		if err := r.write(w, ""); err != nil {
			return writeErr(err)
		}
		n++
		return nil
	})
	return n, err
}

func writeDelta(ctx context.Context, db *store.DB, w *bufio.Writer, since, hw int64) (int64, error) {
	w.WriteString(DeltaHeader + "\n")
	var n int64
	err := db.ListChanges(ctx, since, hw, func(c store.ListChange) error {
		// deviceID: the id the outbox reported
		r := listRow{imei14: c.IMEI14, device: c.DeviceID, brand: c.Brand, model: c.Model, number: c.ModelNumber, kind: c.DeviceType, radio: c.Radio, deviceID: true}
		var change string
		switch c.Event {
		case wire.EventRegistered, wire.EventUpdated:
			change = "add"
			if c.Listed {
				change = "update"
			}
		case wire.EventVoided, wire.EventRevoked:
			if !c.Listed {
				return nil // never on the list: nothing to remove
			}
			change = "remove"
		}
		if err := r.write(w, change); err != nil {
			return writeErr(err)
		}
		n++
		return nil
	})
	return n, err
}

func writeErr(err error) error {
	if _, ok := tacerr.As(err); ok {
		return err
	}
	if errors.Is(err, io.ErrShortWrite) {
		return tacerr.Wrap(tacerr.InvalidInput, err, "write export (disk full?)")
	}
	return tacerr.Wrap(tacerr.InvalidInput, err, "write export")
}
