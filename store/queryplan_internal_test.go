package store

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// The hot lookups by device serial use their partial indexes on SQLite
// instead of scanning the table, the readers moved off the indexes that
// migration 0012 dropped use the remaining ones, and reads and writes by
// IMEI use the IMEI's unique index (the plan names the index).
func TestDeviceSerialQueriesUseIndexes(t *testing.T) {
	db, err := Open(context.Background(), Config{Driver: SQLite, DSN: filepath.Join(t.TempDir(), "ledger.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for q, index := range map[string]string{
		strings.Replace(sqlProvisionedDevices, "IN (?)", "IN (?, ?)", 1): "imeis_device",
		sqlReleaseClaim:    "sqlite_autoindex_device_claims_1",
		sqlSettleClaims(2): "sqlite_autoindex_device_claims_1",
		strings.Replace(sqlRecordedDevices, "IN (?)", "IN (?, ?)", 1): "sqlite_autoindex_devices_1",
		sqlCertByRequest: "sqlite_autoindex_certificates_1",
		sqlIMEISelect + `WHERE i.device_serial = ? AND i.device_serial <> '' ORDER BY i.reservation_id, i.grp, i.slot`: "imeis_device",
		// imeis is keyed by an appending rowid since migration 0015: the
		// reads and writes by IMEI go through its unique index.
		sqlIMEISelect + `WHERE i.imei14 = ?`:                       "imeis_imei14",
		strings.Replace(sqlBindReserved, "IN (?)", "IN (?, ?)", 1): "imeis_imei14",
		`UPDATE imeis SET state = 'BOUND', cert_serial = v.column3, bound_at = ? FROM (VALUES (CAST(? AS BIGINT),?,?)) AS v
			WHERE imeis.imei14 = v.column1 AND imeis.state = 'RESERVED' AND imeis.device_serial = v.column2`: "imeis_imei14",
		`SELECT imei14 FROM imeis WHERE imei14 >= ? AND imei14 < ? ORDER BY imei14`: "COVERING INDEX imeis_imei14",
		// The pool and lease usage counts (counts.go) read the partial
		// indexes of the rows not BOUND, never a scan of imeis; the last
		// reservations from an id on the primary key.
		sqlReservedByPool:   "imeis_reserved",
		sqlRetiredByPool:    "COVERING INDEX imeis_retired",
		sqlReservedIn:       "imeis_reserved",
		sqlRetiredIn:        "COVERING INDEX imeis_retired",
		sqlLastReservations: "INTEGER PRIMARY KEY",
		sqlActivity:         "INTEGER PRIMARY KEY",
		sqlReservationCount: "INTEGER PRIMARY KEY",
		sqlReservationIDsIn: "INTEGER PRIMARY KEY",
		fmt.Sprintf(sqlActivityOver, idRanges(2)):       "INTEGER PRIMARY KEY",
		fmt.Sprintf(sqlReservationIDsOver, idRanges(3)): "INTEGER PRIMARY KEY",
		// The identity events (audit.CheckIdentities): a few leaves through
		// the partial index, not a walk of the log by its key.
		dialects[SQLite].identityLeavesQuery(): "audit_identity",
	} {
		args := make([]any, strings.Count(q, "?"))
		for i := range args {
			args[i] = "a"
		}
		if p := queryPlan(t, db, q, args...); !strings.Contains(p, index) {
			t.Errorf("plan of %q does not use %s: %s", q, index, p)
		}
	}
}

// TestReservationIDRangeSearches: the first and last reservation ids (the
// start of every activity and last-reservation read) are two searches of
// the primary key on SQLite, never a scan of the reservations (SQLite
// optimises MIN and MAX only when a statement has a single one of them).
func TestReservationIDRangeSearches(t *testing.T) {
	db, err := Open(context.Background(), Config{Driver: SQLite, DSN: filepath.Join(t.TempDir(), "ledger.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p := queryPlan(t, db, sqlReservationIDRange)
	if strings.Contains(p, "SCAN reservations") || strings.Count(p, "SEARCH reservations") != 2 {
		t.Fatalf("plan of %q: %s; want two searches of reservations and no scan", sqlReservationIDRange, p)
	}
}

// queryPlan is SQLite's plan of q (EXPLAIN QUERY PLAN), its steps joined
// with "; ".
func queryPlan(t *testing.T, db *DB, q string, args ...any) string {
	t.Helper()
	rows, err := db.r.Query("EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(plan, "; ")
}

// TestCheckPlans: the ledger check's whole-table statements read each
// table in its stored order on SQLite (a plain SCAN, probes by key for a
// join): none walks an index over another key to return rows in that
// order, which fetched every row of a large ledger from a random page
// (docs/benchmarks.md "Session 20 (checkspeed)"). SQLite's planner uses no
// statistics here, so the plan on an empty ledger is the plan at 10^7.
func TestCheckPlans(t *testing.T) {
	db, err := Open(context.Background(), Config{Driver: SQLite, DSN: filepath.Join(t.TempDir(), "ledger.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{sqlCheckPoolRows, sqlCheckReservations, sqlCheckDeviceSerials, sqlCheckUnbound, sqlCheckDevices} {
		p := queryPlan(t, db, q)
		scans := 0
		for _, step := range strings.Split(p, "; ") {
			if strings.HasPrefix(step, "SCAN ") {
				scans++
				if strings.Contains(step, " USING ") {
					t.Errorf("plan of %q walks an index: %s", q, p)
				}
			}
		}
		if scans == 0 {
			t.Errorf("plan of %q scans no table: %s", q, p)
		}
	}
}
