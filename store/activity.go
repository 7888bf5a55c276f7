package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
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
// (replicas' clocks, batches committed out of order): a read from a time
// starts its id search this much earlier and the time filter drops what is
// too old, and an id a cursor found missing is waited for this long.
const ActivitySlack = 5 * time.Minute

// ActivityCursor marks which reservations a reader has counted, so that
// its next read (RecentActivity, LastReservations) counts only those
// committed since: every reservation with an id at or below After was
// counted, except the ids in Pending. The zero cursor has counted nothing.
// A caller keeps the cursor a read returned for its next read; it encodes
// to JSON (a saved cache).
type ActivityCursor struct {
	After   int64        `json:"after"`
	Pending []PendingIDs `json:"pending,omitempty"`
}

// IsZero reports whether the cursor has counted nothing.
func (c ActivityCursor) IsZero() bool { return c.After == 0 && len(c.Pending) == 0 }

// PendingIDs are reservation ids at or below a cursor's After that no
// committed reservation had at its read. A PostgreSQL batch takes its ids
// before it commits, so a later id can commit first (another replica's
// batch, or the next batch of the same committer); a read counts a pending
// id when it has committed. An id still missing ActivitySlack after it was
// first missed is dropped: its batch rolled back (PostgreSQL never hands
// an id out twice). On SQLite one writer commits ids in order and a cursor
// has none pending.
type PendingIDs struct {
	From   int64 `json:"from"`
	To     int64 `json:"to"`
	Missed int64 `json:"missed"` // when first missed, Unix microseconds on the ledger's clock
}

// maxPending bounds a cursor's pending ranges; beyond it (a flood of
// failed batches) the oldest are dropped, as if they had expired.
const maxPending = 64

const (
	// Two subqueries: SQLite reads MIN and MAX from the primary key only
	// when a statement has a single one of them; MIN(id), MAX(id) in one
	// SELECT scanned an index of every reservation (0.4 s at 10^6) at each
	// overview refresh.
	sqlReservationIDRange = `SELECT COALESCE((SELECT MIN(id) FROM reservations), 0), COALESCE((SELECT MAX(id) FROM reservations), 0)`
	sqlReservationAt      = `SELECT id, created_at FROM reservations WHERE id >= ? ORDER BY id LIMIT 1`
	sqlReservationCount   = `SELECT COUNT(*) FROM reservations WHERE id BETWEEN ? AND ?`
	sqlActivityOver       = `SELECT r.caller, p.name, (r.created_at - ?) / ? AS bucket, COUNT(*), SUM(r.devices * r.per_device), MAX(r.created_at)
FROM reservations r JOIN pools p ON p.id = r.pool_id
WHERE %s AND r.created_at >= ?
GROUP BY r.caller, p.name, bucket ORDER BY r.caller, p.name, bucket`
	sqlLastReservationsOver = `SELECT r.caller, MAX(r.created_at) FROM reservations r WHERE %s GROUP BY r.caller`
	sqlReservationIDsOver   = `SELECT r.id FROM reservations r WHERE %s ORDER BY r.id`
)

// idRanges is a condition on r.id: within any of n ranges, each given as
// two arguments. Readers select ids BETWEEN two bounds: with both bounds
// PostgreSQL's generic plan of a prepared statement reads the primary key,
// where an open range (id >= ?) was planned as a scan of the table.
func idRanges(n int) string {
	return "(" + strings.Repeat("r.id BETWEEN ? AND ? OR ", n-1) + "r.id BETWEEN ? AND ?)"
}

// The reads over one id range (a read with nothing pending; tests of the
// plans).
var (
	sqlActivity         = fmt.Sprintf(sqlActivityOver, idRanges(1))
	sqlLastReservations = fmt.Sprintf(sqlLastReservationsOver, idRanges(1))
	sqlReservationIDsIn = fmt.Sprintf(sqlReservationIDsOver, idRanges(1))
)

// RecentActivity sums, per caller, pool and bucket of width bucket counted
// from since, the reservations created at or after since that cur has not
// counted, and returns the cursor past them. From the zero cursor it reads
// the reservations made since since (the id search of
// firstReservationSince); with the cursor of its previous read, only those
// committed since (a refresh's cost grows with the line's rate times the
// time between refreshes, neither with the ledger nor with the window).
func (db *DB) RecentActivity(ctx context.Context, cur ActivityCursor, since time.Time, bucket time.Duration) ([]Activity, ActivityCursor, error) {
	if bucket <= 0 {
		return nil, cur, tacerr.Field(tacerr.InvalidInput, "bucket", "must be positive")
	}
	if since.IsZero() {
		return nil, cur, tacerr.Field(tacerr.InvalidInput, "since", "must be set")
	}
	var out []Activity
	next, err := db.readNew(ctx, cur, since, func(tx *Tx, ranges int, ids []any) error {
		args := append(append([]any{since.UnixMicro(), bucket.Microseconds()}, ids...), since.UnixMicro())
		rows, err := tx.queryx(tx.rebind(fmt.Sprintf(sqlActivityOver, idRanges(ranges))), args...)
		if err != nil {
			return translate(err, "read recent reservations")
		}
		defer rows.Close()
		for rows.Next() {
			var a Activity
			var last int64
			if err := rows.Scan(&a.Caller, &a.Pool, &a.Bucket, &a.Reservations, &a.IMEIs, &last); err != nil {
				return translate(err, "read recent reservations")
			}
			a.Last = micros(last)
			out = append(out, a)
		}
		return translate(rows.Err(), "read recent reservations")
	})
	if err != nil {
		return nil, cur, err
	}
	return out, next, nil
}

// LastReservations adds into last (a caller's time only moves forward;
// a new map when last is nil) when each caller last reserved IMEIs among
// the reservations cur has not counted, and returns it with the cursor
// past them. From the zero cursor it reads every reservation (a scan of
// the table: once, for a reader's first read).
func (db *DB) LastReservations(ctx context.Context, cur ActivityCursor, last map[string]time.Time) (map[string]time.Time, ActivityCursor, error) {
	if last == nil {
		last = map[string]time.Time{}
	}
	next, err := db.readNew(ctx, cur, time.Time{}, func(tx *Tx, ranges int, ids []any) error {
		rows, err := tx.queryx(tx.rebind(fmt.Sprintf(sqlLastReservationsOver, idRanges(ranges))), ids...)
		if err != nil {
			return translate(err, "read the last reservation of each caller")
		}
		defer rows.Close()
		for rows.Next() {
			var caller string
			var at int64
			if err := rows.Scan(&caller, &at); err != nil {
				return translate(err, "read the last reservation of each caller")
			}
			if t := micros(at); t.After(last[caller]) {
				last[caller] = t
			}
		}
		return translate(rows.Err(), "read the last reservation of each caller")
	})
	if err != nil {
		return nil, cur, err
	}
	return last, next, nil
}

// ReservationCursorSince returns a cursor that has counted the
// reservations made before since, give or take ActivitySlack (the id
// search of firstReservationSince): a read from it reads those made since
// and may read some made before again. For a reader whose earlier counts
// were kept by time (a cache saved before cursors existed) and whose
// counts tolerate a reservation read twice (LastReservations' maxima).
func (db *DB) ReservationCursorSince(ctx context.Context, since time.Time) (ActivityCursor, error) {
	var cur ActivityCursor
	err := db.readTx(ctx, func(tx *Tx) error {
		var lo, hi int64
		if err := tx.queryRowx(sqlReservationIDRange).Scan(&lo, &hi); err != nil {
			return translate(err, "read reservation ids")
		}
		first, err := firstReservationSince(tx, since, lo, hi)
		cur.After = first - 1
		return err
	})
	return cur, err
}

// readNew calls read, in one snapshot, over the reservations cur has not
// counted (ranges id ranges, their bounds in ids, for idRanges) and
// returns the cursor past them. From the zero cursor it reads from the id
// search for cold (firstReservationSince), or every reservation when cold
// is zero; ids missing below ActivitySlack before now are then taken as
// settled, as they are when a cursor's pending ids expire.
func (db *DB) readNew(ctx context.Context, cur ActivityCursor, cold time.Time, read func(tx *Tx, ranges int, ids []any) error) (ActivityCursor, error) {
	now := db.Now()
	next := cur
	err := db.readTx(ctx, func(tx *Tx) error {
		var lo, hi int64
		if err := tx.queryRowx(sqlReservationIDRange).Scan(&lo, &hi); err != nil {
			return translate(err, "read reservation ids")
		}
		from, check := cur.After+1, cur.After+1
		if cur.IsZero() {
			var err error
			if from = lo; !cold.IsZero() {
				if from, err = firstReservationSince(tx, cold, lo, hi); err != nil {
					return err
				}
			}
			if check, err = firstReservationSince(tx, now, lo, hi); err != nil {
				return err
			}
			check = max(check, from)
		}
		pending := slices.DeleteFunc(slices.Clone(cur.Pending), func(p PendingIDs) bool {
			return now.Sub(micros(p.Missed)) > ActivitySlack
		})
		ids := make([]any, 0, 2+2*len(pending))
		if from <= hi {
			ids = append(ids, from, hi)
		}
		for _, p := range pending {
			ids = append(ids, p.From, p.To)
		}
		if len(ids) > 0 {
			if err := read(tx, len(ids)/2, ids); err != nil {
				return err
			}
		}
		var err error
		next.After = max(cur.After, hi)
		next.Pending, err = stillMissing(tx, pending, check, hi, now.UnixMicro())
		return err
	})
	if err != nil {
		return cur, err
	}
	return next, nil
}

// stillMissing returns the ranges of pending that no committed reservation
// fills yet and the ids in [from, to] that none has, first missed at
// missed: the pending ranges of the cursor after a read in tx.
func stillMissing(tx *Tx, pending []PendingIDs, from, to, missed int64) ([]PendingIDs, error) {
	var out []PendingIDs
	if from <= to {
		var n int64
		if err := tx.get(&n, tx.rebind(sqlReservationCount), from, to); err != nil {
			return nil, translate(err, "count reservation ids")
		}
		if n != to-from+1 {
			var ids []int64
			if err := tx.sel(&ids, tx.rebind(sqlReservationIDsIn), from, to); err != nil {
				return nil, translate(err, "read reservation ids")
			}
			out = gaps(out, ids, PendingIDs{From: from, To: to, Missed: missed})
		}
	}
	if len(pending) > 0 {
		args := make([]any, 0, 2*len(pending))
		for _, p := range pending {
			args = append(args, p.From, p.To)
		}
		var ids []int64
		if err := tx.sel(&ids, tx.rebind(fmt.Sprintf(sqlReservationIDsOver, idRanges(len(pending)))), args...); err != nil {
			return nil, translate(err, "read pending reservation ids")
		}
		for _, p := range pending {
			out = gaps(out, ids, p)
		}
	}
	if len(out) > maxPending {
		slices.SortStableFunc(out, func(a, b PendingIDs) int { return cmp.Compare(b.Missed, a.Missed) })
		out = out[:maxPending]
	}
	slices.SortFunc(out, func(a, b PendingIDs) int { return cmp.Compare(a.From, b.From) })
	return out, nil
}

// gaps appends to out the parts of r that are not among ids (ascending),
// each first missed when r was.
func gaps(out []PendingIDs, ids []int64, r PendingIDs) []PendingIDs {
	i, _ := slices.BinarySearch(ids, r.From)
	next := r.From
	for ; i < len(ids) && ids[i] <= r.To; i++ {
		if ids[i] > next {
			out = append(out, PendingIDs{From: next, To: ids[i] - 1, Missed: r.Missed})
		}
		next = ids[i] + 1
	}
	if next <= r.To {
		out = append(out, PendingIDs{From: next, To: r.To, Missed: r.Missed})
	}
	return out
}

// firstReservationSince returns the smallest reservation id in [lo, hi]
// whose created_at is at or after since - ActivitySlack, found by a binary
// search over the primary key (ids grow with time, give or take a few
// minutes), or hi+1 when there is none.
func firstReservationSince(tx *Tx, since time.Time, lo, hi int64) (int64, error) {
	from := since.Add(-ActivitySlack).UnixMicro()
	at := tx.rebind(sqlReservationAt)
	first := hi + 1
	for lo <= hi {
		mid := lo + (hi-lo)/2
		var id, created int64
		err := tx.queryRowx(at, mid).Scan(&id, &created)
		if errors.Is(err, sql.ErrNoRows) {
			hi = mid - 1
			continue
		}
		if err != nil {
			return 0, translate(err, "search reservations by time")
		}
		if created >= from {
			first, hi = id, mid-1
		} else {
			lo = id + 1
		}
	}
	return first, nil
}
