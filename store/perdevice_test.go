package store_test

import (
	"context"
	"regexp"
	"strconv"
	"testing"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// TestSchemaPerDeviceBound: the ledger's schema bounds the IMEIs per device
// (the TAC's imeis_per_device, a reservation's per_device) with a CHECK
// that SQL cannot take from Go; it must say what imei.MaxPerDevice, the
// bound's owner, says. A migration or a change of the constant that moves
// one and not the other fails here.
func TestSchemaPerDeviceBound(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		q := `SELECT sql FROM sqlite_schema WHERE type = 'table' AND sql LIKE '%per_device%'`
		// SQLite keeps the CREATE statement; PostgreSQL rewrites a CHECK
		// as ((col >= 1) AND (col <= 5))
		upper := regexp.MustCompile(`(\w*per_device) BETWEEN 1 AND (\d+)`)
		if db.Dialect() == store.Postgres {
			q = `SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'c' AND pg_get_constraintdef(oid) LIKE '%per_device%'`
			upper = regexp.MustCompile(`(\w*per_device) <= (\d+)`)
		}
		var defs []string
		if err := storetest.Reader(db).SelectContext(context.Background(), &defs, q); err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, d := range defs {
			for _, m := range upper.FindAllStringSubmatch(d, -1) {
				n, _ := strconv.Atoi(m[2])
				if n != imei.MaxPerDevice {
					t.Errorf("the schema bounds %s at %d IMEIs, imei.MaxPerDevice at %d", m[1], n, imei.MaxPerDevice)
				}
				seen[m[1]] = true
			}
		}
		for _, col := range []string{"imeis_per_device", "per_device"} {
			if !seen[col] {
				t.Errorf("no CHECK bounds %s in the schema (%q)", col, defs)
			}
		}
	})
}
