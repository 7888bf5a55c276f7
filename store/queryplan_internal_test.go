package store

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// The hot lookups by device serial use their partial indexes on SQLite
// instead of scanning the table, and the readers moved off the indexes that
// migration 0012 dropped use the remaining ones (the plan names the index).
func TestDeviceSerialQueriesUseIndexes(t *testing.T) {
	db, err := Open(context.Background(), Config{Driver: SQLite, DSN: filepath.Join(t.TempDir(), "ledger.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for q, index := range map[string]string{
		strings.Replace(sqlProvisionedDevices, "IN (?)", "IN (?, ?)", 1): "imeis_device",
		sqlReleaseClaim:  "sqlite_autoindex_device_claims_1",
		sqlCertByRequest: "sqlite_autoindex_certificates_1",
		sqlIMEISelect + `WHERE i.device_serial = ? AND i.device_serial <> '' ORDER BY i.reservation_id, i.grp, i.slot`: "imeis_device",
	} {
		rows, err := db.r.Query("EXPLAIN QUERY PLAN "+q, "a", "b")
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		if p := strings.Join(plan, "; "); !strings.Contains(p, index) {
			t.Errorf("plan of %q does not use %s: %s", q, index, p)
		}
	}
}
