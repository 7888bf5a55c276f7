package audit

import (
	"context"
	"strings"
	"testing"

	"github.com/tacline/tacline/lifecycle"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// TestCheckIdentities: on both databases, stations, role certificates and
// issuers made by tacline agree with the audit log's identity events; each
// way of changing one of those tables behind tacline's back (as a doctored
// backup would) is found and named, and undoing it makes the check pass
// again; an identity leaf changed in place fails the check as a broken log.
func TestCheckIdentities(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		ctx := context.Background()
		db, _ := openLog(t, d)
		must := func(err error) { noErr(t, err) }
		must(db.EnrollStation(ctx, store.StationRecord{ID: "line-1", Factory: "F1", Line: "L1", CertSerial: "0a"}, "admin"))
		must(db.EnrollStation(ctx, store.StationRecord{ID: "line-2", Factory: "F1", Line: "L2", CertSerial: "0b"}, "admin"))
		must(db.DisableStation(ctx, "line-2", "admin"))
		must(db.EnrollPerson(ctx, store.PersonCert{CertSerial: "1A", Person: "ana", Roles: []string{"operator"}}, "admin"))
		must(db.EnrollPerson(ctx, store.PersonCert{CertSerial: "1b", Person: "ben", Roles: []string{"auditor"}}, "admin"))
		_, err := db.DisablePerson(ctx, "ben", "admin")
		must(err)
		_, err = db.DisableRoleCertificate(ctx, "ff", "admin") // never recorded: recorded by its serial alone
		must(err)
		must(db.AddIssuer(ctx, store.IssuerRecord{KeyID: "k1", Label: "dev-1", Kind: "device", Curve: "P-256", Active: true}, "admin"))
		must(db.AddIssuer(ctx, store.IssuerRecord{KeyID: "k2", Label: "dev-2", Kind: "device", Curve: "P-256", Active: true}, "admin"))
		must(db.RevokeIssuer(ctx, "k1", lifecycle.RevokeSuperseded, "admin"))
		must(db.AddIssuer(ctx, store.IssuerRecord{KeyID: "k3", Label: "dev-3", Kind: "device", Curve: "P-256"}, "admin")) // inactive: no event
		emit(t, db, "dev", 0, 5, 5)                                                                                       // device events between them are not read

		rep, err := CheckIdentities(ctx, db)
		must(err)
		if !rep.OK() || rep.Events != 10 || rep.Stations != 2 || rep.People != 3 || rep.Issuers != 3 {
			t.Fatalf("a ledger tacline made: %+v, want OK with 10 identity events, 2 stations, 3 role certificates, 3 issuers", rep)
		}

		exec := func(q string) { // statements separated by "; "
			t.Helper()
			must(db.InTx(ctx, func(tx *store.Tx) error {
				for _, s := range strings.Split(q, "; ") {
					if _, err := storetest.Exec(tx, s); err != nil {
						return err
					}
				}
				return nil
			}))
		}
		for _, c := range []struct{ name, do, undo, want string }{
			{"station's pools widened", `UPDATE stations SET pools = 'other' WHERE id = 'line-1'`, `UPDATE stations SET pools = '' WHERE id = 'line-1'`,
				`station "line-1" differs from its enrolment (audit leaf 0): pools "other" (the event: "")`},
			{"disabled station enabled", `UPDATE stations SET disabled_at = NULL WHERE id = 'line-2'`, `UPDATE stations SET disabled_at = 1 WHERE id = 'line-2'`,
				`station "line-2" is enabled in the ledger but disabled in the audit log`},
			{"station added", `INSERT INTO stations (id, factory, line, pools, cert_serial, enrolled_at) VALUES ('rogue', 'F1', 'L9', '', '0c', 1)`, `DELETE FROM stations WHERE id = 'rogue'`,
				`station "rogue" has no station.enrolled event`},
			{"station removed", `DELETE FROM stations WHERE id = 'line-1'`, `INSERT INTO stations (id, factory, line, pools, cert_serial, enrolled_at) VALUES ('line-1', 'F1', 'L1', '', '0a', 1)`,
				`station "line-1", enrolled at audit leaf 0, is not in the ledger`},
			{"role added to a person", `UPDATE people SET roles = 'operator,admin' WHERE cert_serial = '1a'`, `UPDATE people SET roles = 'operator' WHERE cert_serial = '1a'`,
				`role certificate 1a differs from its enrolment (audit leaf 3): roles "operator,admin" (the event: "operator")`},
			{"disabled person enabled", `UPDATE people SET disabled_at = NULL WHERE cert_serial = '1b'`, `UPDATE people SET disabled_at = 1 WHERE cert_serial = '1b'`,
				`role certificate 1b (person "ben") is enabled in the ledger but disabled in the audit log`},
			{"serial-only certificate enabled", `UPDATE people SET disabled_at = NULL WHERE cert_serial = 'ff'`, `UPDATE people SET disabled_at = 1 WHERE cert_serial = 'ff'`,
				`role certificate ff (person "") is enabled in the ledger but disabled in the audit log`},
			{"person added", `INSERT INTO people (cert_serial, person, roles, enrolled_at) VALUES ('2c', 'eve', 'admin', 1)`, `DELETE FROM people WHERE cert_serial = '2c'`,
				`role certificate 2c (person "eve", roles admin) has no person.enrolled or person.disabled event`},
			{"inactive issuer activated", `UPDATE issuers SET active = false WHERE key_id = 'k2'; UPDATE issuers SET active = true WHERE key_id = 'k3'`,
				`UPDATE issuers SET active = false WHERE key_id = 'k3'; UPDATE issuers SET active = true WHERE key_id = 'k2'`,
				`issuer k3 (device, label "dev-3") is the active device issuer in the ledger, but the audit log's last issuer.activated of that kind names issuer k2`},
			{"revocation undone", `UPDATE issuers SET revoked_at = NULL, revoke_reason = '' WHERE key_id = 'k1'`, `UPDATE issuers SET revoked_at = 1, revoke_reason = 'superseded' WHERE key_id = 'k1'`,
				`issuer k1 (device, label "dev-1") is not revoked in the ledger, but the audit log revoked it`},
			{"issuer relabelled", `UPDATE issuers SET label = 'other-key' WHERE key_id = 'k2'`, `UPDATE issuers SET label = 'dev-2' WHERE key_id = 'k2'`,
				`issuer k2 differs from its audit events (leaf 8): label "other-key" (the event: "dev-2")`},
		} {
			exec(c.do)
			rep, err := CheckIdentities(ctx, db)
			must(err)
			if rep.OK() || !strings.Contains(strings.Join(rep.Violations, "\n"), c.want) {
				t.Errorf("%s: %q, want a violation containing %q", c.name, rep.Violations, c.want)
			}
			exec(c.undo)
			if rep, err := CheckIdentities(ctx, db); err != nil || !rep.OK() {
				t.Fatalf("%s undone: %+v, %v, want OK", c.name, rep, err)
			}
		}

		// The enrolment's leaf rewritten to match a doctored row (the
		// append-only guard dropped first, as one with the file or the
		// database's owner can): the log's tree no longer holds it.
		exec(dropLeafGuard(d))
		var leaf []byte
		must(db.InTx(ctx, func(tx *store.Tx) error {
			return storetest.Get(tx, &leaf, `SELECT data FROM audit_leaves WHERE idx = 0`)
		}))
		e, err := DecodeEvent(leaf)
		must(err)
		e.Attrs["pools"] = "other"
		forged, err := EncodeEvent(e)
		must(err)
		must(db.InTx(ctx, func(tx *store.Tx) error {
			_, err := storetest.Exec(tx, `UPDATE audit_leaves SET data = ? WHERE idx = 0`, forged)
			return err
		}))
		exec(`UPDATE stations SET pools = 'other' WHERE id = 'line-1'`)
		if _, err := CheckIdentities(ctx, db); !tacerr.Is(err, tacerr.LedgerInvariant) || !strings.Contains(err.Error(), "audit leaf 0, an identity event, is not the leaf the log's tree holds") {
			t.Fatalf("a rewritten identity leaf: %v, want ledger_invariant naming leaf 0", err)
		}
	})
}

// TestVerifyLeaves: the log's leaves, as stored, hash to its head's root;
// an identity event whose type is altered in place (so that the partial
// index no longer lists it, and CheckIdentities, which proves the leaves
// it finds, cannot see it is gone) is found by recomputing the root from
// every leaf.
func TestVerifyLeaves(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		ctx := context.Background()
		db, _ := openLog(t, d)
		must := func(err error) { noErr(t, err) }
		must(db.EnrollStation(ctx, store.StationRecord{ID: "line-1", Factory: "F1", Line: "L1", CertSerial: "0a"}, "admin"))
		emit(t, db, "dev", 0, 7, 3)
		must(db.DisableStation(ctx, "line-1", "admin")) // leaf 8
		if n, err := VerifyLeaves(ctx, db); err != nil || n != 9 {
			t.Fatalf("a log tacline wrote: %d leaves, %v; want 9 and no error", n, err)
		}
		// The disable hidden (its type's first letter changed, so the
		// partial index skips it) and the station enabled again.
		must(db.InTx(ctx, func(tx *store.Tx) error {
			for _, q := range []string{dropLeafGuard(d), `UPDATE stations SET disabled_at = NULL WHERE id = 'line-1'`} {
				if _, err := storetest.Exec(tx, q); err != nil {
					return err
				}
			}
			var leaf []byte
			if err := storetest.Get(tx, &leaf, `SELECT data FROM audit_leaves WHERE idx = 8`); err != nil {
				return err
			}
			leaf = append([]byte(nil), leaf...)
			leaf[5] = 'S' // "station.disabled" -> "Station.disabled"
			_, err := storetest.Exec(tx, `UPDATE audit_leaves SET data = ? WHERE idx = 8`, leaf)
			return err
		}))
		if rep, err := CheckIdentities(ctx, db); err != nil || rep.Events != 1 {
			t.Fatalf("CheckIdentities on the hidden disable: %+v, %v; want it to see only the enrolment", rep, err)
		}
		if _, err := VerifyLeaves(ctx, db); !tacerr.Is(err, tacerr.LedgerInvariant) || !strings.Contains(err.Error(), "do not hash to its head's root") {
			t.Fatalf("a leaf changed in place: %v, want ledger_invariant", err)
		}
	})
}

func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// dropLeafGuard drops the trigger that keeps audit leaves from being
// updated, as one with the ledger's file or its database's owner can.
func dropLeafGuard(d store.Dialect) string {
	if d == store.Postgres {
		return `DROP TRIGGER audit_leaves_append_only ON audit_leaves`
	}
	return `DROP TRIGGER audit_leaves_no_update`
}
