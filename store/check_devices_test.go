package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// TestCheckDeviceSerialInTwoReservations: a device serial holding live
// IMEIs from two reservations is named, and VOIDED IMEIs do not count (the
// check groups the whole table by serial without the serial index).
func TestCheckDeviceSerialInTwoReservations(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		seed(t, db, 0, 99)
		var snrs []int64
		for _, id := range []string{"a", "b", "c"} {
			r, err := reserve(db, id, "A", 2)
			if err != nil {
				t.Fatal(err)
			}
			snrs = append(snrs, int64(r.Devices[0][0].Uint64()))
		}
		mustCheck(t, db)
		// c's first IMEI recorded for dev-a, then voided: not live.
		if err := rawExec(db, fmt.Sprintf(`UPDATE imeis SET device_serial = 'dev-a' WHERE imei14 = %d`, snrs[2])); err != nil {
			t.Fatal(err)
		}
		checkFinds(t, db, "device dev-a holds IMEIs from 2 reservations")
		if err := db.InTx(context.Background(), func(tx *store.Tx) error {
			return storetest.SetIMEIState(tx, uint64(snrs[2]), string(store.StateVoided))
		}); err != nil {
			t.Fatal(err)
		}
		mustCheck(t, db)
		// b's IMEIs recorded for dev-a: live, in a second reservation.
		if err := rawExec(db, fmt.Sprintf(`UPDATE imeis SET device_serial = 'dev-a' WHERE reservation_id = (SELECT reservation_id FROM imeis WHERE imei14 = %d)`, snrs[1])); err != nil {
			t.Fatal(err)
		}
		checkFinds(t, db, "device dev-a holds IMEIs from 2 reservations")
	})
}

// TestCheckDeviceAgainstItsIMEIs: a provisioned device whose group's IMEI
// is in another state, or recorded for another device, is named with that
// IMEI (the check joins devices and imeis without walking either in serial
// order).
func TestCheckDeviceAgainstItsIMEIs(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		seed(t, db, 0, 99)
		res, reqs := reserveBatch(t, db, "d", 3)
		var binds []*store.Binding
		for i, r := range res {
			binds = append(binds, bindingOf(r, reqs[i]))
		}
		if _, errs := db.RunBatch(nil, binds); fmt.Sprint(errs) != "[<nil> <nil> <nil>]" {
			t.Fatalf("errors = %v", errs)
		}
		mustCheck(t, db)
		second := binds[1].IMEIs[1]
		// Recorded for a serial with no other IMEI (no serial in two
		// reservations).
		if err := rawExec(db, fmt.Sprintf(`UPDATE imeis SET device_serial = 'dev-other' WHERE imei14 = %d`, second.Uint64())); err != nil {
			t.Fatal(err)
		}
		checkFinds(t, db, fmt.Sprintf(`device dev-d1 is BOUND, but its IMEI %s is BOUND (recorded for device "dev-other")`, second))
		if err := rawExec(db, fmt.Sprintf(`UPDATE imeis SET device_serial = 'dev-d1' WHERE imei14 = %d`, second.Uint64())); err != nil {
			t.Fatal(err)
		}
		mustCheck(t, db)
		first := binds[2].IMEIs[0]
		if err := db.InTx(context.Background(), func(tx *store.Tx) error {
			return storetest.SetIMEIState(tx, first.Uint64(), string(store.StateRevoked))
		}); err != nil {
			t.Fatal(err)
		}
		checkFinds(t, db, fmt.Sprintf(`device dev-d2 is BOUND, but its IMEI %s is REVOKED (recorded for device "dev-d2")`, first))
	})
}
