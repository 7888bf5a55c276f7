package dirbs

import (
	"archive/zip"
	"context"
	"encoding/csv"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/register"
	"github.com/tacline/tacline/register/reconcile"
	"github.com/tacline/tacline/register/registertest"
	"github.com/tacline/tacline/register/wire"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

const tac = 1234500

func im(snr uint32) imei.IMEI { m, _ := imei.New(tac, snr); return m }

func readZip(t *testing.T, path string) (string, string) {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	if len(zr.File) != 1 {
		t.Fatalf("%s holds %d files", path, len(zr.File))
	}
	rc, err := zr.File[0].Open()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return zr.File[0].Name, string(b)
}

func row(snr uint32, device, change string) string {
	s := im(snr).Digits14() + ",Acme,Phone 1,whitelist,M-1,Acme,Smartphone,LTE," + device
	if change != "" {
		s += "," + change
	}
	return s
}

func TestExports(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			db := storetest.Open(t, d)
			db.AddSink(register.Outbox{})
			registertest.Seed(t, db, tac, []registertest.Row{
				{SNR: 0, State: "RESERVED", Device: "Dev-A/1", Slot: 0}, {SNR: 1, State: "RESERVED", Device: "Dev-A/1", Slot: 1},
				{SNR: 2, State: "RESERVED", Device: "DevB"}, {SNR: 3, State: "RESERVED", Device: "DevC"},
				{SNR: 4, State: "RESERVED"}, {SNR: 5, State: "RESERVED", Device: "DevE"},
			})
			tr := func(snrs []uint32, state, event, device string) {
				registertest.Transition(t, db, tac, snrs, state, event, device)
			}
			tr([]uint32{0, 1}, "BOUND", store.EventIMEIBound, "Dev-A/1")
			tr([]uint32{2}, "BOUND", store.EventIMEIBound, "DevB")
			tr([]uint32{3}, "BOUND", store.EventIMEIBound, "DevC")
			dir := t.TempDir()

			full, err := ExportRegistrationList(ctx, db, filepath.Join(dir, "list1.zip"), 0)
			if err != nil {
				t.Fatal(err)
			}
			name, csv := readZip(t, full.File)
			devA, devB, devC, devE := "QDQ65Q76Q2DAQ2F1", "QDQ65Q76B", "QDQ65Q76C", "QDQ65Q76E" // wire.DeviceID of Dev-A/1, DevB, DevC, DevE
			want := strings.Join([]string{Header, row(0, devA, ""), row(1, devA, ""), row(2, devB, ""), row(3, devC, "")}, "\n") + "\n"
			if name != "list1.csv" || csv != want || full.Rows != 4 || full.ID == 0 || full.HighWater != 4 {
				t.Fatalf("full export %+v %s:\n%s\nwant\n%s", full, name, csv, want)
			}

			tr([]uint32{2}, "REVOKED", store.EventIMEIRevoked, "DevB")
			tr([]uint32{4}, "VOIDED", store.EventIMEIVoided, "")
			tr([]uint32{5}, "BOUND", store.EventIMEIBound, "DevE")
			tr([]uint32{0, 1}, "BOUND", store.EventDeviceReissued, "Dev-A/1")

			delta, err := ExportRegistrationList(ctx, db, filepath.Join(dir, "delta.zip"), full.ID)
			if err != nil {
				t.Fatal(err)
			}
			_, csv = readZip(t, delta.File)
			want = strings.Join([]string{DeltaHeader, row(0, devA, "update"), row(1, devA, "update"), row(2, devB, "remove"), row(5, devE, "add")}, "\n") + "\n"
			if csv != want || delta.Rows != 4 || delta.Kind != KindDelta || delta.Since != full.ID {
				t.Fatalf("delta %+v:\n%s\nwant\n%s", delta, csv, want)
			}
			// Nothing changed since the delta: an empty delta.
			empty, err := ExportRegistrationList(ctx, db, filepath.Join(dir, "empty.zip"), delta.ID)
			if err != nil || empty.Rows != 0 {
				t.Fatalf("empty delta %+v %v", empty, err)
			}

			// DRS: one file per number of IMEIs per device.
			drs, err := ExportDRS(ctx, db, filepath.Join(dir, "drs.tsv"), nil)
			if err != nil || len(drs) != 2 {
				t.Fatalf("drs %+v %v: want two files", drs, err)
			}
			for i, want := range []struct {
				file, tsv string
				n         int
			}{
				{"drs-1imei.tsv", im(3).String() + "\n" + im(5).String() + "\n", 1},
				{"drs-2imei.tsv", im(0).String() + "\t" + im(1).String() + "\n", 2},
			} {
				b, _ := os.ReadFile(drs[i].File)
				if drs[i].File != filepath.Join(dir, want.file) || string(b) != want.tsv || drs[i].IMEIsPerDevice != want.n || drs[i].Rows != int64(strings.Count(want.tsv, "\n")) || drs[i].ID == 0 {
					t.Fatalf("drs %+v:\n%q\nwant %s\n%q", drs[i], b, want.file, want.tsv)
				}
			}
			none, err := ExportDRS(ctx, db, filepath.Join(dir, "none.tsv"), []string{"Other"})
			if err != nil || len(none) != 0 {
				t.Fatalf("filtered drs %+v %v", none, err)
			}
			some, err := ExportDRS(ctx, db, filepath.Join(dir, "some.tsv"), []string{"Other", registertest.Model})
			if err != nil || len(some) != 2 || some[0].Rows+some[1].Rows != 3 {
				t.Fatalf("filtered drs %+v %v", some, err)
			}
		})
	}
}

func TestExportErrorsLeaveNoFile(t *testing.T) {
	ctx := context.Background()
	db := storetest.Open(t, store.SQLite)
	dir := t.TempDir()
	old := filepath.Join(dir, "list.zip")
	os.WriteFile(old, []byte("previous"), 0o644)
	for _, tc := range []struct {
		name  string
		run   func() error
		field string
	}{
		{"unknown delta base", func() error {
			_, err := ExportRegistrationList(ctx, db, old, 42)
			return err
		}, "delta-since"},
		{"not a zip name", func() error {
			_, err := ExportRegistrationList(ctx, db, filepath.Join(dir, "list.csv"), 0)
			return err
		}, "output"},
		{"missing directory", func() error {
			_, err := ExportDRS(ctx, db, filepath.Join(dir, "no", "drs.tsv"), nil)
			return err
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			e, ok := tacerr.As(err)
			if !ok || e.Field != tc.field {
				t.Fatalf("err = %v, want field %q", err, tc.field)
			}
			if b, _ := os.ReadFile(old); string(b) != "previous" {
				t.Fatal("previous export overwritten")
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 1 {
				t.Fatalf("directory holds %d entries: a temporary file was left", len(ents))
			}
		})
	}
}

// TestExportsNeverMergeOrDrop: devices whose serials differ only in
// punctuation or case keep their own device_id in the registration list
// (the ids map back to the serials, and stay apart when a register folds
// case); the zip entry carries the export's time; the DRS files read back
// by a strict reader (one that drops rows with another column count than
// the first) lose no device.
func TestExportsNeverMergeOrDrop(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			db := storetest.Open(t, d)
			db.AddSink(register.Outbox{})
			devices := []struct {
				serial string
				snrs   []uint32
			}{
				{"COLL-X-1", []uint32{0, 1}}, {"COLLX-1", []uint32{2, 3}}, {"COLLX1", []uint32{4, 5}},
				{"collx1", []uint32{6}}, {"COLL_X_1", []uint32{7, 8, 9}},
			}
			var seed []registertest.Row
			for _, dv := range devices {
				for i, snr := range dv.snrs {
					seed = append(seed, registertest.Row{SNR: snr, State: "RESERVED", Device: dv.serial, Slot: i})
				}
			}
			registertest.Seed(t, db, tac, seed)
			for _, dv := range devices {
				registertest.Transition(t, db, tac, dv.snrs, "BOUND", store.EventIMEIBound, dv.serial)
			}
			dir := t.TempDir()

			before := time.Now().Add(-2 * time.Second) // DOS times have 2-second steps
			list, err := ExportRegistrationList(ctx, db, filepath.Join(dir, "list.zip"), 0)
			if err != nil {
				t.Fatal(err)
			}
			after := time.Now().Add(2 * time.Second)
			zr, err := zip.OpenReader(list.File)
			if err != nil {
				t.Fatal(err)
			}
			defer zr.Close()
			if mod := zr.File[0].Modified; mod.Before(before) || mod.After(after) {
				t.Errorf("zip entry time %v, want the export's (%v..%v)", mod, before, after)
			}
			_, body := readZip(t, list.File)
			recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			byID := map[string][]string{} // device_id, case folded -> approved_imei
			for _, rec := range recs[1:] {
				id := strings.ToLower(rec[8])
				byID[id] = append(byID[id], rec[0])
			}
			if len(byID) != len(devices) {
				t.Fatalf("%d device ids for %d devices: %v", len(byID), len(devices), byID)
			}
			for _, dv := range devices {
				id := wire.DeviceID(dv.serial)
				var want []string
				for _, snr := range dv.snrs {
					want = append(want, im(snr).Digits14())
				}
				if got := byID[strings.ToLower(id)]; !slices.Equal(got, want) {
					t.Errorf("device %s (id %s) has IMEIs %v, want %v", dv.serial, id, got, want)
				}
				if back, err := wire.DeviceSerial(strings.ToLower(id)); err != nil || back != dv.serial {
					t.Errorf("id %s maps back to %q, %v; want %q", id, back, err, dv.serial)
				}
			}

			drs, err := ExportDRS(ctx, db, filepath.Join(dir, "drs.tsv"), nil)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range drs {
				b, err := os.ReadFile(e.File)
				if err != nil {
					t.Fatal(err)
				}
				rows, dropped := strictTSV(string(b))
				if dropped != 0 || int64(len(rows)) != e.Rows {
					t.Errorf("%s: a strict reader kept %d rows and dropped %d; the export wrote %d", e.File, len(rows), dropped, e.Rows)
				}
				for _, r := range rows {
					if len(r) != e.IMEIsPerDevice {
						t.Errorf("%s: row %v, want %d IMEIs", e.File, r, e.IMEIsPerDevice)
					}
					got = append(got, strings.Join(r, "+"))
				}
			}
			slices.Sort(got)
			var want []string
			for _, dv := range devices {
				var ims []string
				for _, snr := range dv.snrs {
					ims = append(ims, im(snr).String())
				}
				want = append(want, strings.Join(ims, "+"))
			}
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("DRS devices read back %v, want %v", got, want)
			}
		})
	}
}

// strictTSV reads a header-less TSV as a strict importer does: the first
// row sets the column count and rows with another count are dropped.
func strictTSV(s string) (rows [][]string, dropped int) {
	cols := -1
	for line := range strings.Lines(s) {
		f := strings.Split(strings.TrimSuffix(line, "\n"), "\t")
		if cols < 0 {
			cols = len(f)
		}
		if len(f) != cols {
			dropped++
			continue
		}
		rows = append(rows, f)
	}
	return rows, dropped
}

// TestListRoundTripsQuotedLineBreaks: a model name with a line break and a
// brand with quotes are quoted in the registration list, and the list
// reads back (tacline reconcile, as DIRBS-Core reads it) as one row per
// IMEI, every one matched under its device, none malformed.
func TestListRoundTripsQuotedLineBreaks(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			db := storetest.Open(t, d)
			seed := []storetest.SeedIMEI{
				{SNR: 0, State: "BOUND", Device: "DevA", Slot: 0}, {SNR: 1, State: "BOUND", Device: "DevA", Slot: 1},
				{SNR: 2, State: "BOUND", Device: "DevB"}, {SNR: 3, State: "BOUND", Device: "DevC"},
			}
			if err := storetest.SeedLedger(ctx, db, tac, "Acme \"Labs\"", "Phone\r\n1\nLite", seed); err != nil {
				t.Fatal(err)
			}
			list, err := ExportRegistrationList(ctx, db, filepath.Join(t.TempDir(), "list.zip"), 0)
			if err != nil || list.Rows != 4 {
				t.Fatalf("export %+v, %v", list, err)
			}
			in, err := reconcile.OpenInput(list.File)
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			out := t.TempDir()
			sum, err := reconcile.Run(ctx, reconcile.DBLedger{DB: db}, in, reconcile.Options{Format: reconcile.FormatDIRBS, OutDir: out})
			if err != nil {
				t.Fatal(err)
			}
			if sum.RegisterRows != 4 || sum.Matched != 4 || sum.Malformed != 0 || sum.RegisteredToOtherDevice != 0 || sum.MissingInRegister != 0 {
				t.Fatalf("the list read back as %+v: want 4 rows, all matched", sum)
			}
		})
	}
}
