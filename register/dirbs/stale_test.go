package dirbs

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tacline/tacline/register"
	"github.com/tacline/tacline/register/registertest"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// TestDRSExportReplacesEarlierFiles: a DRS export to a path is the whole
// set of its files. Before, a number of IMEIs per device with no bound
// device left the file of an earlier export to the same path in place
// ("no bound device: nothing written"), listing devices voided since, which
// an upload of the export's files would register again.
func TestDRSExportReplacesEarlierFiles(t *testing.T) {
	ctx := context.Background()
	db := storetest.Open(t, store.SQLite)
	db.AddSink(register.Outbox{})
	registertest.Seed(t, db, tac, []registertest.Row{
		{SNR: 0, State: "RESERVED", Device: "A", Slot: 0}, {SNR: 1, State: "RESERVED", Device: "A", Slot: 1},
		{SNR: 2, State: "RESERVED", Device: "B"},
	})
	registertest.Transition(t, db, tac, []uint32{0, 1}, "BOUND", store.EventIMEIBound, "A")
	registertest.Transition(t, db, tac, []uint32{2}, "BOUND", store.EventIMEIBound, "B")
	path := filepath.Join(t.TempDir(), "drs.tsv")
	files := func(want ...int) {
		t.Helper()
		for n := 1; n <= MaxIMEIsPerDevice; n++ {
			_, err := os.Stat(DRSFile(path, n))
			wanted := false
			for _, w := range want {
				wanted = wanted || w == n
			}
			if exists := err == nil; exists != wanted {
				t.Errorf("%s exists: %v, want %v", DRSFile(path, n), exists, wanted)
			}
		}
	}
	if es, err := ExportDRS(ctx, db, path, nil); err != nil || len(es) != 2 {
		t.Fatalf("ExportDRS = %+v, %v", es, err)
	}
	files(1, 2)

	registertest.Transition(t, db, tac, []uint32{0, 1}, "VOIDED", store.EventIMEIVoided, "A")
	if es, err := ExportDRS(ctx, db, path, nil); err != nil || len(es) != 1 || es[0].IMEIsPerDevice != 1 {
		t.Fatalf("ExportDRS after voiding A = %+v, %v", es, err)
	}
	files(1)

	registertest.Transition(t, db, tac, []uint32{2}, "VOIDED", store.EventIMEIVoided, "B")
	if es, err := ExportDRS(ctx, db, path, nil); err != nil || len(es) != 0 {
		t.Fatalf("ExportDRS of a ledger without a bound device = %+v, %v", es, err)
	}
	files()
}
