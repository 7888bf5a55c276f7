package storetest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/tacline/tacline/store"
)

// countQueries are the ledger's row counts and events that a refused
// request must leave as they were: IMEIs by state, pools' high-water marks,
// reservations, intents by state, devices by state, certificates (and
// revoked ones), device keys, audit leaves and register outbox rows.
var countQueries = []string{
	`SELECT 'imeis.' || state, COUNT(*) FROM imeis GROUP BY state`,
	`SELECT 'pools.next_snr', COALESCE(SUM(next_snr), 0) FROM pools`,
	`SELECT 'reservations', COUNT(*) FROM reservations`,
	`SELECT 'issuances.' || state, COUNT(*) FROM issuances GROUP BY state`,
	`SELECT 'devices.' || state, COUNT(*) FROM devices GROUP BY state`,
	`SELECT 'certificates', COUNT(*) FROM certificates`,
	`SELECT 'certificates.revoked', COUNT(*) FROM certificates WHERE revoked_at IS NOT NULL`,
	`SELECT 'device_keys', COUNT(*) FROM device_keys`,
	`SELECT 'audit_leaves', COUNT(*) FROM audit_leaves`,
	`SELECT 'register_outbox', COUNT(*) FROM register_outbox`,
}

// Counts is a snapshot of the ledger's row counts and events (see
// countQueries): two equal snapshots mean nothing was reserved, voided,
// bound, revoked, issued, audited or reported in between.
type Counts map[string]int64

// ReadCounts takes a snapshot.
func ReadCounts(t testing.TB, db *store.DB) Counts {
	t.Helper()
	out := Counts{}
	for _, q := range countQueries {
		rows, err := Reader(db).QueryContext(context.Background(), q)
		if err != nil {
			t.Fatalf("ledger counts: %s: %v", q, err)
		}
		for rows.Next() {
			var k string
			var n int64
			if err := rows.Scan(&k, &n); err != nil {
				t.Fatal(err)
			}
			out[k] = n
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// Diff lists what differs between two snapshots ("" when nothing does).
func (c Counts) Diff(after Counts) string {
	all := maps.Clone(c)
	maps.Copy(all, after)
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(all)) {
		if c[k] != after[k] {
			fmt.Fprintf(&b, "%s %d -> %d; ", k, c[k], after[k])
		}
	}
	return b.String()
}
