package store_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// TestPostgresBindingInPlace: on PostgreSQL the binding of provisioned
// devices updates their IMEI rows and intents in place (heap-only tuples:
// no index names a column the binding changes, and the page has room for
// the new versions: fillfactor), read off the heap pages themselves
// (pageinspect's HEAP_ONLY_TUPLE flag of each row's current version). Before migration
// 0027 the partial indexes naming state made every such update write new
// entries into every index of the row: no version was heap-only.
func TestPostgresBindingInPlace(t *testing.T) {
	db := storetest.Open(t, store.Postgres)
	seed(t, db, 0, 999)
	// Twenty devices reserved in one batch and bound in one batch, as a
	// station line's devices go: the binding updates their rows together,
	// before PostgreSQL can prune the old versions, so the page must hold
	// both (at fillfactor 75, 33 of the 40 IMEI rows were in place).
	res, reqs := reserveBatch(t, db, "hot", 20)
	var binds []*store.Binding
	for i, r := range res {
		binds = append(binds, bindingOf(r, reqs[i]))
	}
	if _, errs := db.RunBatch(nil, binds); fmt.Sprint(errs) != fmt.Sprint(make([]error, len(binds))) {
		t.Fatalf("errors = %v", errs)
	}
	mustCheck(t, db)
	if err := rawExec(db, `CREATE EXTENSION IF NOT EXISTS pageinspect`); err != nil {
		t.Fatal(err)
	}
	// HEAP_ONLY_TUPLE is bit 0x8000 of t_infomask2.
	for table, final := range map[string]string{"imeis": "state = 'BOUND'", "issuances": "state = 'issued'"} {
		var c struct {
			HeapOnly int64 `db:"heap_only"`
			All      int64 `db:"n"`
		}
		q := `SELECT COUNT(*) FILTER (WHERE (h.t_infomask2 & 32768) <> 0) AS heap_only, COUNT(*) AS n
			FROM ` + table + ` t, LATERAL heap_page_items(get_raw_page('` + table + `', (t.ctid::text::point)[0]::int)) h
			WHERE h.lp = (t.ctid::text::point)[1]::int AND t.` + final
		if err := storetest.Reader(db).GetContext(context.Background(), &c, q); err != nil {
			t.Fatal(err)
		}
		want := int64(len(binds))
		if table == "imeis" {
			want = 0
			for _, b := range binds {
				want += int64(len(b.IMEIs))
			}
		}
		if c.All != want || c.HeapOnly != c.All {
			t.Errorf("%s: %d of %d bound rows updated in place, want all of %d", table, c.HeapOnly, c.All, want)
		}
	}
}

// TestPostgresSideTables: imeis_not_bound holds exactly the IMEI rows not
// BOUND and intents_pending the pending intents, through reservation,
// binding, void and revocation (the triggers of migration 0027), and
// ledger check names each way a side table can differ from the rows it
// mirrors.
func TestPostgresSideTables(t *testing.T) {
	ctx := context.Background()
	db := storetest.Open(t, store.Postgres)
	seed(t, db, 0, 999)
	res, reqs := reserveBatch(t, db, "side", 4)
	if _, errs := db.RunBatch(nil, []*store.Binding{bindingOf(res[0], reqs[0]), bindingOf(res[1], reqs[1])}); fmt.Sprint(errs) != "[<nil> <nil>]" {
		t.Fatalf("errors = %v", errs)
	}
	// One IMEI of a reserved device voided; the second bound device
	// revoked, both IMEIs.
	voided := res[2].Devices[0][0]
	if err := db.InTx(ctx, func(tx *store.Tx) error {
		if err := storetest.SetIMEIState(tx, voided.Uint64(), string(store.StateVoided)); err != nil {
			return err
		}
		for _, m := range res[1].Devices[0] {
			if err := storetest.SetIMEIState(tx, m.Uint64(), string(store.StateRevoked)); err != nil {
				return err
			}
		}
		_, err := storetest.Exec(tx, `UPDATE devices SET state = 'REVOKED' WHERE serial = 'dev-side1'`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	type row struct {
		Key   string `db:"k"`
		State string `db:"state"`
	}
	read := func(q string) []row {
		t.Helper()
		var rows []row
		if err := storetest.Reader(db).SelectContext(ctx, &rows, q); err != nil {
			t.Fatal(err)
		}
		return rows
	}
	side := read(`SELECT imei14::text AS k, state FROM imeis_not_bound ORDER BY imei14`)
	if want := read(`SELECT imei14::text AS k, state FROM imeis WHERE state <> 'BOUND' ORDER BY imei14`); !reflect.DeepEqual(side, want) || len(side) != 6 {
		t.Fatalf("imeis_not_bound = %v, want the rows not BOUND %v (two devices reserved, one IMEI of them voided, two revoked)", side, want)
	}
	pending := read(`SELECT request_id AS k, state FROM intents_pending ORDER BY request_id`)
	if want := read(`SELECT request_id AS k, state FROM issuances WHERE state = 'pending' ORDER BY request_id`); !reflect.DeepEqual(pending, want) || len(pending) != 2 {
		t.Fatalf("intents_pending = %v, want the pending intents %v", pending, want)
	}
	mustCheck(t, db)

	reserved := res[3].Devices[0][0]
	bound := res[0].Devices[0][0]
	for _, c := range []struct{ break_, mend, want string }{
		{fmt.Sprintf(`DELETE FROM imeis_not_bound WHERE imei14 = %d`, reserved.Uint64()),
			fmt.Sprintf(`INSERT INTO imeis_not_bound SELECT imei14, pool_id, reservation_id, state, reserved_at FROM imeis WHERE imei14 = %d`, reserved.Uint64()),
			fmt.Sprintf("IMEI %s is RESERVED, but imeis_not_bound has no row for it", reserved)},
		{fmt.Sprintf(`INSERT INTO imeis_not_bound SELECT imei14, pool_id, reservation_id, 'VOIDED', reserved_at FROM imeis WHERE imei14 = %d`, bound.Uint64()),
			fmt.Sprintf(`DELETE FROM imeis_not_bound WHERE imei14 = %d`, bound.Uint64()),
			fmt.Sprintf("imeis_not_bound holds IMEI %s as VOIDED, but the IMEI is BOUND or has no row", bound)},
		{fmt.Sprintf(`UPDATE imeis_not_bound SET state = 'REVOKED' WHERE imei14 = %d`, voided.Uint64()),
			fmt.Sprintf(`UPDATE imeis_not_bound SET state = 'VOIDED' WHERE imei14 = %d`, voided.Uint64()),
			fmt.Sprintf("imeis_not_bound holds IMEI %s (REVOKED) with other values than its row (VOIDED)", voided)},
		{fmt.Sprintf(`DELETE FROM intents_pending WHERE request_id = '%s'`, reqs[3].Issuance.RequestID),
			fmt.Sprintf(`INSERT INTO intents_pending SELECT request_id, kind, device_serial, reservation_id, grp, state, created_at FROM issuances WHERE request_id = '%s'`, reqs[3].Issuance.RequestID),
			fmt.Sprintf("intent %s is pending, but intents_pending has no row for it", reqs[3].Issuance.RequestID)},
		{fmt.Sprintf(`INSERT INTO intents_pending SELECT request_id, kind, device_serial, reservation_id, grp, 'pending', created_at FROM issuances WHERE request_id = '%s'`, reqs[0].Issuance.RequestID),
			fmt.Sprintf(`DELETE FROM intents_pending WHERE request_id = '%s'`, reqs[0].Issuance.RequestID),
			fmt.Sprintf("intents_pending holds intent %s, but the intent is not pending or has no row", reqs[0].Issuance.RequestID)},
		{fmt.Sprintf(`UPDATE intents_pending SET grp = grp + 1 WHERE request_id = '%s'`, reqs[2].Issuance.RequestID),
			fmt.Sprintf(`UPDATE intents_pending SET grp = grp - 1 WHERE request_id = '%s'`, reqs[2].Issuance.RequestID),
			fmt.Sprintf("intents_pending holds intent %s with other values than its row", reqs[2].Issuance.RequestID)},
	} {
		if err := rawExec(db, c.break_); err != nil {
			t.Fatalf("%s: %v", c.break_, err)
		}
		checkFinds(t, db, c.want)
		if err := rawExec(db, c.mend); err != nil {
			t.Fatalf("%s: %v", c.mend, err)
		}
		mustCheck(t, db)
	}
}
