package store

import "github.com/jmoiron/sqlx"

// rebinds keeps the PostgreSQL form ($1, $2...) of the statements the store
// sends. Their texts are a small fixed set (the multi-row writer's unnest
// form does not depend on the number of rows), yet sqlx.Rebind built a new
// string for every statement of every batch and every per-request read:
// 3 % of the bytes a device allocated on PostgreSQL. A memo: past its
// bound a statement is rebound without being kept.
var rebinds = newMemo[string, string](2048)

// rebindDollar is sqlx.Rebind(sqlx.DOLLAR, q), kept.
func rebindDollar(q string) string {
	if r, ok := rebinds.get(q); ok {
		return r
	}
	r := sqlx.Rebind(sqlx.DOLLAR, q)
	rebinds.put(q, r)
	return r
}

// rebind rewrites ? placeholders for the database (PostgreSQL's from
// rebinds; SQLite's are ? already).
func (db *DB) rebind(q string) string {
	if db.dialect == Postgres {
		return rebindDollar(q)
	}
	return db.r.Rebind(q)
}
