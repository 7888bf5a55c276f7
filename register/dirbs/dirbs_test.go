package dirbs

import (
	"archive/zip"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/register"
	"github.com/tacline/tacline/register/registertest"
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
			want := strings.Join([]string{Header, row(0, "DevA1", ""), row(1, "DevA1", ""), row(2, "DevB", ""), row(3, "DevC", "")}, "\n") + "\n"
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
			want = strings.Join([]string{DeltaHeader, row(0, "DevA1", "update"), row(1, "DevA1", "update"), row(2, "DevB", "remove"), row(5, "DevE", "add")}, "\n") + "\n"
			if csv != want || delta.Rows != 4 || delta.Kind != KindDelta || delta.Since != full.ID {
				t.Fatalf("delta %+v:\n%s\nwant\n%s", delta, csv, want)
			}
			// Nothing changed since the delta: an empty delta.
			empty, err := ExportRegistrationList(ctx, db, filepath.Join(dir, "empty.zip"), delta.ID)
			if err != nil || empty.Rows != 0 {
				t.Fatalf("empty delta %+v %v", empty, err)
			}

			drs, err := ExportDRS(ctx, db, filepath.Join(dir, "drs.tsv"), nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(drs.File)
			wantTSV := im(0).String() + "\t" + im(1).String() + "\n" + im(3).String() + "\n" + im(5).String() + "\n"
			if string(b) != wantTSV || drs.Rows != 3 {
				t.Fatalf("drs %+v:\n%q\nwant\n%q", drs, b, wantTSV)
			}
			none, err := ExportDRS(ctx, db, filepath.Join(dir, "none.tsv"), []string{"Other"})
			if err != nil || none.Rows != 0 {
				t.Fatalf("filtered drs %+v %v", none, err)
			}
			some, err := ExportDRS(ctx, db, filepath.Join(dir, "some.tsv"), []string{"Other", registertest.Model})
			if err != nil || some.Rows != 3 {
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
