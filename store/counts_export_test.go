package store

import "context"

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
