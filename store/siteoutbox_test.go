package store_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// TestSiteOutboxLeafIndexes: each site outbox row records the index of
// its event's audit leaf, on both databases and whichever path the audit
// append took (PostgreSQL's guarded statement on the second transaction),
// and the leaf there is the event (SiteEventOf of the decoded leaf equals
// the outbox row). Without the audit log before it, the outbox refuses.
func TestSiteOutboxLeafIndexes(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		l, err := audit.New(db, audit.Config{Origin: "s.example/log", KeyLabel: "k"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		l.Attach()
		db.AddSink(store.SiteOutbox{})
		for _, dev := range []string{"d1", "d2"} {
			if err := db.InTx(ctx, func(tx *store.Tx) error {
				tx.Emit(store.Event{Type: store.EventConfigChanged, Actor: "t"},
					store.Event{Type: store.EventIMEIBound, Actor: "t", RequestID: "r-" + dev, IMEIs: []string{"490154203237518"}, DeviceSerial: dev, CertSerial: "0a"},
					store.Event{Type: store.EventDeviceReissued, Actor: "t", IMEIs: []string{"490154203237518"}, DeviceSerial: dev, CertSerial: "0b",
						Attrs: map[string]string{"previous_cert_serial": "0a"}})
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		pending, err := db.PendingSiteEvents(ctx, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		var idx []int64
		for _, e := range pending {
			idx = append(idx, e.LeafIndex)
		}
		if !reflect.DeepEqual(idx, []int64{1, 2, 4, 5}) {
			t.Fatalf("leaf indexes %v, want [1 2 4 5]", idx)
		}
		leaves, err := db.AuditLeavesAt(ctx, idx)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range pending {
			le, err := audit.DecodeEvent(leaves[e.LeafIndex])
			if err != nil {
				t.Fatal(err)
			}
			want, ok := store.SiteEventOf(le)
			want.Seq, want.LeafIndex = e.Seq, e.LeafIndex
			if !ok || !reflect.DeepEqual(want, e) {
				t.Fatalf("leaf %d is %+v, outbox row %+v", e.LeafIndex, want, e)
			}
		}
		if _, err := db.AuditLeavesAt(ctx, []int64{6}); !tacerr.Is(err, tacerr.NotFound) {
			t.Fatalf("leaf beyond the log: %v", err)
		}
	})
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		db.AddSink(store.SiteOutbox{})
		err := db.InTx(context.Background(), func(tx *store.Tx) error {
			tx.Emit(store.Event{Type: store.EventIMEIBound, Actor: "t", IMEIs: []string{"490154203237518"}})
			return nil
		})
		if !tacerr.Is(err, tacerr.LedgerInvariant) {
			t.Fatalf("site outbox without the audit log: %v", err)
		}
	})
}

// TestRecordCosigned: a site keeps the largest cosigned checkpoint HQ
// returned; a smaller one changes nothing; none kept reads as size 0.
func TestRecordCosigned(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		if cp, err := db.Cosigned(ctx, "s1"); err != nil || cp.Size != 0 || cp.Cosigned != "" {
			t.Fatalf("nothing kept: %+v, %v", cp, err)
		}
		for _, c := range []struct{ record, kept int64 }{{5, 5}, {3, 5}, {8, 8}, {8, 8}} {
			cp := store.SiteCheckpoint{Size: c.record, Hash: make([]byte, 32), Note: "note", Cosigned: fmt.Sprintf("cosigned %d", c.record)}
			if err := db.RecordCosigned(ctx, "s1", cp); err != nil {
				t.Fatal(err)
			}
			got, err := db.Cosigned(ctx, "s1")
			if err != nil || got.Size != c.kept || got.Cosigned != fmt.Sprintf("cosigned %d", c.kept) || len(got.Hash) != 32 {
				t.Fatalf("after recording %d: kept %+v, %v", c.record, got, err)
			}
		}
	})
}
