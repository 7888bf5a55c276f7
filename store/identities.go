package store

import (
	"context"
)

// IdentitySnapshot is what audit.CheckIdentities compares, read in one
// snapshot: the audit log's head, the leaves of its identity events
// (station.*, person.*, issuer.*) below the head, and the tables those
// events describe.
type IdentitySnapshot struct {
	Head     AuditHead
	Leaves   []AuditLeaf // Index and Data only, by index
	Stations []StationRecord
	People   []PersonCert
	Issuers  []IssuerRecord
}

// IdentitySnapshot reads the audit log's head, its identity leaves (through
// the partial index audit_identity: a few leaves, not the log) and every
// station, role certificate and issuer, in one read transaction, so that
// an event committed meanwhile is either in all of them or in none.
func (db *DB) IdentitySnapshot(ctx context.Context) (*IdentitySnapshot, error) {
	var out IdentitySnapshot
	err := db.readTx(ctx, func(tx *Tx) error {
		var err error
		if out.Head, err = scanAuditHead(tx.queryRowx(qAuditHead), "read the audit log head"); err != nil {
			return err
		}
		var leaves []struct {
			Idx  int64  `db:"idx"`
			Data []byte `db:"data"`
		}
		if err := tx.sel(&leaves, tx.rebind(db.sql.identityLeavesQuery()), out.Head.Size); err != nil {
			return translate(err, "read the audit log's identity events")
		}
		out.Leaves = make([]AuditLeaf, len(leaves))
		for i, l := range leaves {
			out.Leaves[i] = AuditLeaf{Index: l.Idx, Data: l.Data}
		}
		var stations []stationRow
		if err := tx.sel(&stations, sqlSelectStations+` ORDER BY id`); err != nil {
			return translate(err, "list stations")
		}
		for _, r := range stations {
			out.Stations = append(out.Stations, r.record())
		}
		var people []personRow
		if err := tx.sel(&people, sqlSelectPeople+` ORDER BY cert_serial`); err != nil {
			return translate(err, "list people")
		}
		for _, r := range people {
			out.People = append(out.People, r.cert())
		}
		var issuers []issuerRow
		if err := tx.sel(&issuers, sqlSelectIssuers+` ORDER BY key_id`); err != nil {
			return translate(err, "list issuers")
		}
		for _, r := range issuers {
			out.Issuers = append(out.Issuers, r.record())
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// identityLeavesQuery selects the identity leaves below a size (its one
// parameter), through the partial index audit_identity.
func (s dialectSQL) identityLeavesQuery() string {
	return `SELECT idx, data FROM audit_leaves WHERE ` + s.identityLeaves + ` AND idx < ? ORDER BY idx`
}
