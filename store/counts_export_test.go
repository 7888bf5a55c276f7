package store

import (
	"context"
	"fmt"
)

// CountPoolsTwice counts the pools twice in one read transaction (the one
// Check and Pools use), calling between in between (tests: a write
// committed meanwhile must not be seen by the second count).
func (db *DB) CountPoolsTwice(ctx context.Context, between func()) (first, second int64, err error) {
	err = db.readTx(ctx, func(tx *Tx) error {
		if err := tx.get(&first, `SELECT COUNT(*) FROM pools`); err != nil {
			return err
		}
		between()
		return tx.get(&second, `SELECT COUNT(*) FROM pools`)
	})
	return first, second, err
}

// PGCountStatements are the statements of the pool, lease, last-reservation
// and activity reads, each with integer arguments (tests of their plans).
var PGCountStatements = map[string][]int64{
	sqlReservedByPool:   nil,
	sqlRetiredByPool:    nil,
	sqlRowsIn:           {1, 2},
	sqlReservedIn:       {1, 2},
	sqlRetiredIn:        {1, 1, 2},
	sqlLastReservations: {1, 2},
	sqlActivity:         {1, 2, 3, 4, 5},
	sqlReservationAt:    {1},
	sqlReservationCount: {1, 2},
	sqlReservationIDsIn: {1, 2},
	// A cursor's read with a range of ids pending.
	fmt.Sprintf(sqlActivityOver, idRanges(2)):         {1, 2, 3, 4, 5, 6, 7},
	fmt.Sprintf(sqlLastReservationsOver, idRanges(2)): {1, 2, 3, 4},
	fmt.Sprintf(sqlReservationIDsOver, idRanges(2)):   {1, 2, 3, 4},
	sqlReservationIDRange:                             nil,
}

// IdentityLeavesQuery is the read of the audit log's identity leaves on
// dialect d (a test of its plan).
func IdentityLeavesQuery(d Dialect) string { return dialects[d].identityLeavesQuery() }
