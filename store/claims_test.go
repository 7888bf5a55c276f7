package store_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/tacline/tacline/lifecycle"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// TestSameSerialAtTwoReplicas: two replicas (two store.DBs on one
// PostgreSQL database) reserve for the same device serial at the same
// moment. Both pass the "already provisioned?" read before either commits
// (the pool row is held locked by the test until both wait on it); the
// serial claim makes the loser's transaction fail whole: one reservation,
// the loser told device_already_provisioned, its SNRs never taken.
func TestSameSerialAtTwoReplicas(t *testing.T) {
	ctx := context.Background()
	cfg := storetest.Config(t, store.Postgres)
	var dbs [2]*store.DB
	for i := range dbs {
		db, err := store.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		dbs[i] = db
	}
	seed(t, dbs[0], 0, 99)
	raw, err := sql.Open("pgx", cfg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	hold, err := raw.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hold.ExecContext(ctx, `SELECT 1 FROM pools WHERE name = 'A' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	for i, id := range []string{"replica-a", "replica-b"} {
		go func() {
			_, err := dbs[i].Reserve(ctx, store.ReserveRequest{RequestID: id, RequestHash: []byte(id), Pool: "A", Caller: "S1",
				Kind: store.KindProvision, DeviceSerial: "SAME-1", PerDevice: 2})
			errs <- err
		}()
	}
	// Wait (synchronisation, not a timing assertion) until both wait on the pool row.
	for waiting := 0; waiting < 2; {
		if err := raw.QueryRowContext(ctx, `SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := hold.Commit(); err != nil {
		t.Fatal(err)
	}
	var won, lost int
	for range 2 {
		switch err := <-errs; {
		case err == nil:
			won++
		case tacerr.Is(err, tacerr.DeviceAlreadyProvisioned):
			lost++
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	var reservations, nextSNR int
	if err := raw.QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM reservations), (SELECT next_snr FROM pools WHERE name = 'A')`).Scan(&reservations, &nextSNR); err != nil {
		t.Fatal(err)
	}
	if won != 1 || lost != 1 || reservations != 1 || nextSNR != 2 {
		t.Fatalf("won %d, lost %d, reservations %d, high-water mark %d: want 1, 1, 1, 2", won, lost, reservations, nextSNR)
	}
	mustCheck(t, dbs[0])
}

// TestDeviceClaimsUpgrade: a ledger made before device claims (schema 6)
// gets claims for its bound devices and pending intents when it is
// migrated (on SQLite migration 0015 then hands a bound device's serial to
// its devices row: no claim), and they hold: the serials cannot be
// reserved again, an abandoned intent frees its serial.
func TestDeviceClaimsUpgrade(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := storetest.Open(t, d)
			seed(t, db, 0, 99)
			res, reqs := reserveBatch(t, db, "u", 3) // three intents; u0 is bound, u1 and u2 stay pending
			if err := db.CommitBinding(ctx, bindingOf(res[0], reqs[0])); err != nil {
				t.Fatal(err)
			}
			if err := db.MigrateDownTo(ctx, 6); err != nil {
				t.Fatal(err)
			}
			if err := db.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			claims := map[string]string{}
			rows, err := storetest.Reader(db).QueryContext(ctx, `SELECT serial, request_id FROM device_claims`)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var s, id string
				if err := rows.Scan(&s, &id); err != nil {
					t.Fatal(err)
				}
				claims[s] = id
			}
			rows.Close()
			want := map[string]string{"dev-u0": "", "dev-u1": "u1", "dev-u2": "u2"}
			if d == store.SQLite {
				delete(want, "dev-u0")
			}
			if len(claims) != len(want) {
				t.Fatalf("claims after the upgrade = %v, want %v", claims, want)
			}
			for s, id := range want {
				if got, ok := claims[s]; !ok || got != id {
					t.Fatalf("claims after the upgrade = %v, want %v", claims, want)
				}
			}
			// Abandon u1: its serial is free again; u2's is not.
			if err := db.Commit(ctx, func(tx *store.Tx) error { return tx.SetIssuanceState("u1", store.IssuanceAbandoned) }); err != nil {
				t.Fatal(err)
			}
			var n int
			if err := storetest.Reader(db).QueryRowContext(ctx, `SELECT COUNT(*) FROM device_claims WHERE serial = 'dev-u1'`).Scan(&n); err != nil || n != 0 {
				t.Fatalf("abandoned claim still there (%d, %v)", n, err)
			}
		})
	}
}

// TestBindIntentClaimsSerial: a bind intent claims its device serial in its
// own transaction: a second intent for the serial fails whole.
func TestBindIntentClaimsSerial(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 99)
		res := preallocate(t, db, "pre", 2)
		intent := func(id string, grp int) *store.Issuance {
			return &store.Issuance{RequestID: id, Kind: "bind", RequestHash: []byte(id), Station: "S1", DeviceSerial: "BIND-1",
				ReservationID: res.ID, Group: grp, CertSerial: "c1" + id, NotBefore: time.Unix(1700000000, 0).UTC(), IssuerKeyID: "k1",
				PublicKey: []byte(id), SPKIHash: []byte(id)}
		}
		if err := db.Commit(ctx, func(tx *store.Tx) error { return tx.InsertIssuance(intent("b1", 0)) }); err != nil {
			t.Fatal(err)
		}
		err := db.Commit(ctx, func(tx *store.Tx) error { return tx.InsertIssuance(intent("b2", 1)) })
		wantCode(t, err, tacerr.DeviceAlreadyProvisioned)
		if is, err := db.IssuanceByRequestID(ctx, "b2"); err != nil || is != nil {
			t.Fatalf("the losing intent was recorded: %+v, %v", is, err)
		}
	})
}

// TestRecordedDeviceHoldsSerial: once a device is recorded its serial stays
// taken, whoever holds it: on SQLite the devices row (the claim is deleted
// at bind, so the claims keep only requests in flight), on PostgreSQL the
// claim. A new provisioning or bind intent for the serial is
// device_already_provisioned and reserves nothing, also after the device's
// IMEIs were voided, alone or in a batch with another device.
func TestRecordedDeviceHoldsSerial(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 99)
		res, reqs := reserveBatch(t, db, "h", 2) // h1 stays pending
		if err := db.CommitBinding(ctx, bindingOf(res[0], reqs[0])); err != nil {
			t.Fatal(err)
		}
		claims := func(serial string) (n int) {
			t.Helper()
			r := storetest.Reader(db)
			if err := r.QueryRowContext(ctx, r.Rebind(`SELECT COUNT(*) FROM device_claims WHERE serial = ?`), serial).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		if want := map[store.Dialect]int{store.SQLite: 0, store.Postgres: 1}[db.Dialect()]; claims("dev-h0") != want || claims("dev-h1") != 1 {
			t.Fatalf("claims of the bound device %d (want %d), of the pending one %d", claims("dev-h0"), want, claims("dev-h1"))
		}
		again := func(id string) store.ReserveRequest {
			r := provisionRequest(id)
			r.DeviceSerial, r.Issuance.DeviceSerial = "dev-h0", "dev-h0"
			return r
		}
		nextSNR := func() uint32 {
			t.Helper()
			p, err := db.Pool(ctx, "A")
			if err != nil {
				t.Fatal(err)
			}
			return p.NextSNR
		}
		before := nextSNR()
		_, err := db.Reserve(ctx, again("n1"))
		wantCode(t, err, tacerr.DeviceAlreadyProvisioned)
		// The device is scrapped: its IMEIs voided, its row VOIDED.
		if err := db.Commit(ctx, func(tx *store.Tx) error {
			if err := tx.Void(res[0].Devices[0], lifecycle.VoidScrapped, "", "test", "void-h0"); err != nil {
				return err
			}
			return tx.UpdateDevice("dev-h0", store.StateVoided, reqs[0].Issuance.CertSerial, "scrapped")
		}); err != nil {
			t.Fatal(err)
		}
		_, err = db.Reserve(ctx, again("n2"))
		wantCode(t, err, tacerr.DeviceAlreadyProvisioned)
		got, errs := db.RunBatch([]store.ReserveRequest{again("n3"), provisionRequest("n4")}, nil)
		wantCode(t, errs[0], tacerr.DeviceAlreadyProvisioned)
		if errs[1] != nil || got[1] == nil {
			t.Fatalf("the other device of the batch: %v", errs[1])
		}
		if after := nextSNR(); after != before+2 {
			t.Fatalf("next SNR %d after the refused requests and one device of 2 IMEIs, want %d", after, before+2)
		}
		pre := preallocate(t, db, "pre-h", 1)
		err = db.Commit(ctx, func(tx *store.Tx) error {
			return tx.InsertIssuance(&store.Issuance{RequestID: "hb", Kind: "bind", RequestHash: []byte("hb"), Station: "S1",
				DeviceSerial: "dev-h0", ReservationID: pre.ID, CertSerial: "c1hb", NotBefore: time.Unix(1700000000, 0).UTC(),
				IssuerKeyID: "k1", PublicKey: []byte("hb"), SPKIHash: []byte("hb")})
		})
		wantCode(t, err, tacerr.DeviceAlreadyProvisioned)
		mustCheck(t, db)
	})
}

// preallocate pre-allocates n devices of 2 IMEIs in pool A.
func preallocate(t *testing.T, db *store.DB, id string, n int) *store.Reservation {
	t.Helper()
	r, err := db.Reserve(context.Background(), store.ReserveRequest{RequestID: id, RequestHash: []byte(id), Pool: "A", Caller: "S1",
		Kind: store.KindPreallocate, Devices: n, PerDevice: 2})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestBindIntentClaimsGroup: a bind intent claims its pre-allocated group
// in its transaction. A second bind intent of the group (another device)
// is invalid_state and records nothing while the first is pending; once the
// first is abandoned the group can be bound again; a void of the group
// abandons the pending intent naming it (no replay may sign for VOIDED
// IMEIs), and a bind of a voided group is invalid_state.
func TestBindIntentClaimsGroup(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 99)
		res := preallocate(t, db, "pre", 1)
		intent := func(id string) *store.Issuance {
			return &store.Issuance{RequestID: id, Kind: "bind", RequestHash: []byte(id), Station: "S1", DeviceSerial: "dev-" + id,
				ReservationID: res.ID, CertSerial: "c2" + id, NotBefore: time.Unix(1700000000, 0).UTC(), IssuerKeyID: "k1",
				PublicKey: []byte(id), SPKIHash: []byte(id)}
		}
		insert := func(id string) error {
			return db.Commit(ctx, func(tx *store.Tx) error { return tx.InsertIssuance(intent(id)) })
		}
		state := func(id string) string {
			t.Helper()
			is, err := db.IssuanceByRequestID(ctx, id)
			if err != nil || is == nil {
				t.Fatalf("intent %s: %+v, %v", id, is, err)
			}
			return is.State
		}
		if err := insert("g1"); err != nil {
			t.Fatal(err)
		}
		wantCode(t, insert("g2"), tacerr.InvalidState)
		if is, err := db.IssuanceByRequestID(ctx, "g2"); err != nil || is != nil {
			t.Fatalf("the losing intent was recorded: %+v, %v", is, err)
		}
		if err := db.Commit(ctx, func(tx *store.Tx) error { return tx.SetIssuanceState("g1", store.IssuanceAbandoned) }); err != nil {
			t.Fatal(err)
		}
		if err := insert("g3"); err != nil {
			t.Fatalf("a bind after the first was abandoned: %v", err)
		}
		if err := db.Commit(ctx, func(tx *store.Tx) error { return tx.Void(res.Devices[0], "scrapped", "", "op", "") }); err != nil {
			t.Fatal(err)
		}
		if got := state("g3"); got != store.IssuanceAbandoned {
			t.Fatalf("intent of a voided group is %s, want abandoned", got)
		}
		wantCode(t, insert("g4"), tacerr.InvalidState)
		mustCheck(t, db)
	})
}

// TestReservationClaimsKey: a provisioning reservation claims its device
// key in its transaction. Of two reservations with one key for two devices
// in one batch, the second is key_reused and reserves nothing; a later one
// too; once the first intent is abandoned its key is free again; the
// binding meets its own claim.
func TestReservationClaimsKey(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 99)
		a, b, c := provisionRequest("k0"), provisionRequest("k1"), provisionRequest("k2")
		b.Issuance.SPKIHash, c.Issuance.SPKIHash = a.Issuance.SPKIHash, a.Issuance.SPKIHash
		got, errs := db.RunBatch([]store.ReserveRequest{a, b}, nil)
		if errs[0] != nil || got[0] == nil {
			t.Fatalf("first reservation: %v", errs[0])
		}
		wantCode(t, errs[1], tacerr.KeyReused)
		_, err := db.Reserve(ctx, c)
		wantCode(t, err, tacerr.KeyReused)
		if rep := mustCheck(t, db); rep.IMEIs != 2 {
			t.Fatalf("ledger holds %d IMEIs, want 2 (the refused reservations reserved nothing)", rep.IMEIs)
		}
		if owner, err := db.DeviceKeyOwner(ctx, a.Issuance.SPKIHash); err != nil || owner != "dev-k0" {
			t.Fatalf("key owner %q, %v; want dev-k0's claim", owner, err)
		}
		if err := db.Commit(ctx, func(tx *store.Tx) error { return tx.SetIssuanceState("k0", store.IssuanceAbandoned) }); err != nil {
			t.Fatal(err)
		}
		if owner, err := db.DeviceKeyOwner(ctx, a.Issuance.SPKIHash); err != nil || owner != "" {
			t.Fatalf("key owner after the abandonment %q, %v; want none", owner, err)
		}
		c.RequestID, c.Issuance.RequestID = "k3", "k3"
		res, err := db.Reserve(ctx, c)
		if err != nil {
			t.Fatalf("the key after the first intent was abandoned: %v", err)
		}
		if err := db.CommitBinding(ctx, bindingOf(res, c)); err != nil {
			t.Fatalf("binding that meets its own key claim: %v", err)
		}
		if owner, _ := db.DeviceKeyOwner(ctx, a.Issuance.SPKIHash); owner != "dev-k2" {
			t.Fatalf("key owner %q after binding, want dev-k2", owner)
		}
	})
}
