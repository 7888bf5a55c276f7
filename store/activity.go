package store

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/tacline/tacline/tacerr"
)

// Activity is what one caller reserved from one pool in one time bucket
// (see RecentActivity).
type Activity struct {
	Caller       string // the station id (or the actor that pre-allocated)
	Pool         string
	Bucket       int   // 0 for the bucket starting at since, 1 for the next...
	Reservations int64 // requests that reserved (provision, pre-allocation)
	IMEIs        int64 // IMEIs they reserved
	Last         time.Time
}

// ActivitySlack is how far out of created_at order reservation ids may be
// (replicas' clocks, batches committed out of order): the id search starts
// this much earlier and the time filter drops what is too old. A reader
// that keeps what it read treats the reservations made less than this
// before its read as not yet all seen.
const ActivitySlack = 5 * time.Minute

const (
	// Two subqueries: SQLite reads MIN and MAX from the primary key only
	// when a statement has a single one of them; MIN(id), MAX(id) in one
	// SELECT scanned an index of every reservation (0.4 s at 10^6) at each
	// overview refresh.
	sqlReservationIDRange = `SELECT COALESCE((SELECT MIN(id) FROM reservations), 0), COALESCE((SELECT MAX(id) FROM reservations), 0)`
	sqlReservationAt      = `SELECT id, created_at FROM reservations WHERE id >= ? ORDER BY id LIMIT 1`
	sqlActivity           = `SELECT r.caller, p.name, (r.created_at - ?) / ? AS bucket, COUNT(*), SUM(r.devices * r.per_device), MAX(r.created_at)
FROM reservations r JOIN pools p ON p.id = r.pool_id
WHERE r.id BETWEEN ? AND ? AND r.created_at >= ?
GROUP BY r.caller, p.name, bucket ORDER BY r.caller, p.name, bucket`
	sqlLastReservations = `SELECT caller, MAX(created_at) FROM reservations WHERE id BETWEEN ? AND ? GROUP BY caller`
)

// RecentActivity sums the reservations made since since per caller, pool
// and bucket of width bucket. Its cost grows with the reservations since
// then, not with the ledger: the first reservation id of the window is
// found by a binary search over the primary key (firstReservationSince),
// so an overview can call it every few seconds.
func (db *DB) RecentActivity(ctx context.Context, since time.Time, bucket time.Duration) ([]Activity, error) {
	if bucket <= 0 {
		return nil, tacerr.Field(tacerr.InvalidInput, "bucket", "must be positive")
	}
	q := db.r
	first, last, err := db.firstReservationSince(ctx, since)
	if err != nil || first < 0 {
		return nil, err
	}
	rows, err := q.QueryxContext(ctx, q.Rebind(sqlActivity), since.UnixMicro(), bucket.Microseconds(), first, last, since.UnixMicro())
	if err != nil {
		return nil, translate(err, "read recent reservations")
	}
	defer rows.Close()
	var out []Activity
	for rows.Next() {
		var a Activity
		var last int64
		if err := rows.Scan(&a.Caller, &a.Pool, &a.Bucket, &a.Reservations, &a.IMEIs, &last); err != nil {
			return nil, translate(err, "read recent reservations")
		}
		a.Last = micros(last)
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, translate(err, "read recent reservations")
	}
	return out, nil
}

// firstReservationSince returns the smallest reservation id whose
// created_at is at or after since - ActivitySlack, found by a binary search
// over the primary key (ids grow with time, give or take a few minutes),
// and the largest id (first is -1 when there is no reservation at all).
// Readers select ids BETWEEN the two: with both bounds PostgreSQL's generic
// plan of a prepared statement reads the primary key, where an open range
// (id >= ?) was planned as a scan of the table.
func (db *DB) firstReservationSince(ctx context.Context, since time.Time) (first, last int64, err error) {
	q := db.r
	var lo, hi int64
	if err := q.QueryRowxContext(ctx, sqlReservationIDRange).Scan(&lo, &hi); err != nil {
		return 0, 0, translate(err, "read reservation ids")
	}
	if hi == 0 {
		return -1, 0, nil
	}
	last = hi
	from := since.Add(-ActivitySlack).UnixMicro()
	at := q.Rebind(sqlReservationAt)
	first = hi + 1
	for lo <= hi {
		mid := lo + (hi-lo)/2
		var id, created int64
		err := q.QueryRowxContext(ctx, at, mid).Scan(&id, &created)
		if errors.Is(err, sql.ErrNoRows) {
			hi = mid - 1
			continue
		}
		if err != nil {
			return 0, 0, translate(err, "search reservations by time")
		}
		if created >= from {
			first, hi = id, mid-1
		} else {
			lo = id + 1
		}
	}
	return first, last, nil
}

// LastReservations returns when each caller last reserved IMEIs among the
// reservations made since since (give or take a few minutes: the id
// search of RecentActivity), added into last (a caller's time only moves
// forward), which it returns (a new map when last is nil). A caller that
// keeps the map and asks again from its previous read's time reads only
// the reservations made since, not the ledger's; the zero time reads every
// reservation (a scan of the table: once, for the first read).
func (db *DB) LastReservations(ctx context.Context, since time.Time, last map[string]time.Time) (map[string]time.Time, error) {
	if last == nil {
		last = map[string]time.Time{}
	}
	first, hi, err := db.firstReservationSince(ctx, since)
	if err != nil || first < 0 {
		return last, err
	}
	if since.IsZero() {
		first = 0
	}
	rows, err := db.r.QueryxContext(ctx, db.r.Rebind(sqlLastReservations), first, hi)
	if err != nil {
		return nil, translate(err, "read the last reservation of each caller")
	}
	defer rows.Close()
	for rows.Next() {
		var caller string
		var at int64
		if err := rows.Scan(&caller, &at); err != nil {
			return nil, translate(err, "read the last reservation of each caller")
		}
		if t := micros(at); t.After(last[caller]) {
			last[caller] = t
		}
	}
	if err := rows.Err(); err != nil {
		return nil, translate(err, "read the last reservation of each caller")
	}
	return last, nil
}
