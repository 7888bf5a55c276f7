package dirbs

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/register"
	"github.com/tacline/tacline/register/registertest"
	"github.com/tacline/tacline/register/sim"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// TestDeltaAfterRetention: once retention deleted the acknowledged rows a
// delta's base export covered, the delta still tells add, update and
// remove apart (from the ledger, not from the deleted rows), a delta since
// an export older than the deleted rows is refused, and a full list after
// everything was pruned keeps a high-water mark above the deleted ids.
func TestDeltaAfterRetention(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			db := storetest.Open(t, d)
			db.AddSink(register.Outbox{})
			now := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
			db.SetClock(func() time.Time { return now })
			registertest.Seed(t, db, tac, []registertest.Row{
				{SNR: 0, State: "RESERVED", Device: "DEVA"}, {SNR: 1, State: "RESERVED", Device: "DEVB"},
				{SNR: 2, State: "RESERVED", Device: "DEVC"}, {SNR: 3, State: "RESERVED"},
			})
			_, ts := registertest.Simulator(t, sim.Faults{})
			w, err := register.NewWorker(db, register.Config{URL: ts.URL, BatchAge: time.Nanosecond}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			deliver := func() { t.Helper(); registertest.Drain(t, w.DeliverOnce) }
			tr := func(snr uint32, state, event, device string) {
				registertest.Transition(t, db, tac, []uint32{snr}, state, event, device)
			}
			dir := t.TempDir()
			before, err := ExportRegistrationList(ctx, db, filepath.Join(dir, "before.zip"), 0)
			if err != nil {
				t.Fatal(err)
			}
			tr(0, "BOUND", store.EventIMEIBound, "DEVA")
			tr(1, "BOUND", store.EventIMEIBound, "DEVB")
			deliver()
			full, err := ExportRegistrationList(ctx, db, filepath.Join(dir, "full.zip"), 0)
			if err != nil || full.Rows != 2 {
				t.Fatalf("full export %+v %v", full, err)
			}
			now = now.Add(48 * time.Hour)
			res, err := register.Prune(ctx, db, 24*time.Hour, 0, 0)
			if err != nil || res.Deleted != 2 || res.Stats.PrunedThrough != full.HighWater {
				t.Fatalf("prune %+v %v (export high-water %d)", res, err, full.HighWater)
			}

			tr(0, "BOUND", store.EventDeviceReissued, "DEVA") // listed: update
			tr(1, "REVOKED", store.EventIMEIRevoked, "DEVB")  // listed: remove
			tr(2, "BOUND", store.EventIMEIBound, "DEVC")      // new: add
			tr(3, "VOIDED", store.EventIMEIVoided, "")        // never listed: nothing
			delta, err := ExportRegistrationList(ctx, db, filepath.Join(dir, "delta.zip"), full.ID)
			if err != nil {
				t.Fatal(err)
			}
			_, csv := readZip(t, delta.File)
			want := strings.Join([]string{DeltaHeader, row(0, "DEVA", "update"), row(1, "DEVB", "remove"), row(2, "DEVC", "add")}, "\n") + "\n"
			if csv != want {
				t.Fatalf("delta after retention:\n%s\nwant\n%s", csv, want)
			}

			_, err = ExportRegistrationList(ctx, db, filepath.Join(dir, "old.zip"), before.ID)
			if e, ok := tacerr.As(err); !ok || e.Field != "delta-since" || !strings.Contains(err.Error(), "retention") {
				t.Fatalf("delta since an export older than the pruned rows = %v", err)
			}

			// Everything acknowledged and pruned: the next export's mark
			// still covers the deleted ids, and a delta from it works.
			deliver()
			now = now.Add(48 * time.Hour)
			if _, err := register.Prune(ctx, db, 24*time.Hour, 0, 0); err != nil {
				t.Fatal(err)
			}
			var left int
			if err := storetest.Reader(db).Get(&left, `SELECT COUNT(*) FROM register_outbox`); err != nil || left != 0 {
				t.Fatalf("%d outbox rows left (%v)", left, err)
			}
			last, err := ExportRegistrationList(ctx, db, filepath.Join(dir, "last.zip"), 0)
			if err != nil || last.HighWater < delta.HighWater || last.Rows != 2 {
				t.Fatalf("export after pruning everything %+v %v (previous mark %d)", last, err, delta.HighWater)
			}
			if empty, err := ExportRegistrationList(ctx, db, filepath.Join(dir, "empty.zip"), last.ID); err != nil || empty.Rows != 0 {
				t.Fatalf("delta since it %+v %v", empty, err)
			}
		})
	}
}
