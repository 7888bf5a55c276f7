package register_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tacline/tacline/catalog"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/register"
	"github.com/tacline/tacline/register/wire"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// TestRealLedgerOperations drives the outbox through the store's own ledger
// operations (Reserve, Bind, Void, Revoke, RecordReissue), as the
// provisioner does, and delivers the result to the simulator.
func TestRealLedgerOperations(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			ctx := context.Background()
			db := storetest.Open(t, d)
			db.AddSink(register.Outbox{})
			err := db.AddTACs(ctx, []catalog.TAC{{TAC: 1234500, Brand: "Acme", ModelName: "Phone 1", DeviceType: "Smartphone",
				RadioInterfaces: []string{"LTE"}, IMEIsPerDevice: 2, AllocationDate: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}, "test")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.CreatePool(ctx, store.Pool{Name: "p1", TAC: 1234500, SNRStart: 0, SNREnd: 999, Factory: "F", Line: "L", Product: "P", Market: "DE"}, "test"); err != nil {
				t.Fatal(err)
			}
			devs := make([][]imei.IMEI, 4)
			for i := range devs {
				r, err := db.Reserve(ctx, store.ReserveRequest{RequestID: fmt.Sprint("r", i), RequestHash: []byte{byte(i)}, Pool: "p1",
					Caller: "st1", Kind: store.KindProvision, DeviceSerial: fmt.Sprint("SN-", i), PerDevice: 2})
				if err != nil {
					t.Fatal(err)
				}
				devs[i] = r.Devices[0]
			}
			step := func(fn func(tx *store.Tx) error) {
				t.Helper()
				if err := db.InTx(ctx, fn); err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < 3; i++ {
				step(func(tx *store.Tx) error {
					return tx.Bind(devs[i], fmt.Sprint("SN-", i), fmt.Sprint("c", i), "test", "b")
				})
			}
			step(func(tx *store.Tx) error { return tx.Void(devs[3], "test", "", "test", "v") })
			step(func(tx *store.Tx) error { return tx.Revoke(devs[1], "keyCompromise", "test", "x") })
			step(func(tx *store.Tx) error { return tx.RecordReissue(devs[2], "SN-2", "c2b", "c2", "test", "y") })

			_, ts := simulator(t)
			w, err := register.NewWorker(db, config(ts.URL), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			for {
				n, err := w.DeliverOnce(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if n == 0 {
					break
				}
			}
			// 3 devices x 2 registered, 2 voided, 2 revoked, 2 updated.
			r := status(t, db)
			if r.Counts[register.StateAcknowledged] != 12 || r.Pending != 0 || r.Counts[register.StateRejected] != 0 {
				t.Fatalf("status %+v", r)
			}
			s := simStats(t, ts.URL)
			if s.Applied != 12 || s.Items[wire.StatusAccepted] != 12 {
				t.Fatalf("sim stats %+v", s)
			}
		})
	}
}
