// Package dirbs writes the bulk files that existing national registers
// import, from the ledger: the DIRBS registration list (a zip holding
// exactly one CSV named like the zip), its delta form since an earlier
// export, and the DIRBS device-registration (DRS) bulk upload (a
// header-less TSV, one device per row, one column per IMEI; one file per
// number of IMEIs per device, so no row is ragged). Every device_id is
// wire.DeviceID's: two devices never share one, even compared without case.
//
// Exports are streamed from the database (memory does not grow with the
// ledger) and written atomically: to a temporary file in the target's
// directory, synced, then renamed, so a reader never sees half a file. Each
// export is recorded in register_exports with the outbox high-water mark it
// reflects, which a later delta export starts from.
//
// Consistency: on PostgreSQL the high-water mark is read after waiting for
// the transactions writing outbox rows to finish (a SHARE lock on the outbox
// table, held only for that read), so every outbox row at or below it is
// committed. A full list read afterwards may already contain a few later
// changes; the next delta reports them again (an add of a listed IMEI is an
// update to DIRBS), so nothing is ever missed.
package dirbs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// Header is the DIRBS registration list header; DeltaHeader adds the
// change_type column of the delta form.
const (
	Header      = "approved_imei,make,model,status,model_number,brand_name,device_type,radio_interface,device_id"
	DeltaHeader = Header + ",change_type"
)

// Export kinds, as recorded in register_exports.
const (
	KindList  = "registration-list"
	KindDelta = "registration-list-delta"
	KindDRS   = "drs"
)

// Export describes one written export.
type Export struct {
	ID        int64  `json:"id"`
	Kind      string `json:"kind"`
	File      string `json:"file"`
	Rows      int64  `json:"rows"`
	HighWater int64  `json:"outbox_high_water"`
	Since     int64  `json:"since_export,omitempty"`
	// IMEIsPerDevice is the columns of every row of a DRS file (its
	// upload's IMEIs per device); 0 for a registration list.
	IMEIsPerDevice int `json:"imeis_per_device,omitempty"`
}

// highWater returns the largest outbox id below which every row is
// committed.
func highWater(ctx context.Context, db *store.DB) (int64, error) { return db.OutboxHighWater(ctx) }

// prunedThrough returns the largest outbox id retention deleted (0: none):
// a delta since an export below it would miss events.
func prunedThrough(ctx context.Context, db *store.DB) (int64, error) {
	s, err := db.OutboxStats(ctx)
	return s.PrunedThrough, err
}

// record adds the export to register_exports and sets its id.
func record(ctx context.Context, db *store.DB, e *Export) error {
	r := store.ExportRecord{Kind: e.Kind, File: e.File, Rows: e.Rows, HighWater: e.HighWater, Since: e.Since}
	if err := db.RecordExport(ctx, &r); err != nil {
		return store.Translate(err, fmt.Sprintf("record export of %s (the file is written)", e.File))
	}
	e.ID = r.ID
	return nil
}

// atomicFile is a temporary file renamed onto its target on commit.
type atomicFile struct {
	*os.File
	target string
	done   bool
}

func createAtomic(target string) (*atomicFile, error) {
	dir := filepath.Dir(target)
	f, err := os.CreateTemp(dir, "."+filepath.Base(target)+".tmp-*")
	if err != nil {
		return nil, tacerr.Wrap(tacerr.InvalidInput, err, "create %s (does the directory exist?)", target)
	}
	return &atomicFile{File: f, target: target}, nil
}

// commit syncs, closes and renames the file onto its target.
func (a *atomicFile) commit() error {
	if err := a.Sync(); err != nil {
		return tacerr.Wrap(tacerr.InvalidInput, err, "write %s", a.target)
	}
	if err := a.Close(); err != nil {
		return tacerr.Wrap(tacerr.InvalidInput, err, "write %s", a.target)
	}
	if err := os.Rename(a.Name(), a.target); err != nil {
		os.Remove(a.Name())
		return tacerr.Wrap(tacerr.InvalidInput, err, "rename onto %s", a.target)
	}
	a.done = true
	return nil
}

// abort removes the temporary file unless committed.
func (a *atomicFile) abort() {
	if !a.done {
		a.Close()
		os.Remove(a.Name())
	}
}

// csvField quotes a field when it needs it (RFC 4180).
func csvField(s string) string {
	if !strings.ContainsAny(s, ",\"\r\n") {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}
