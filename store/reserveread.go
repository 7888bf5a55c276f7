package store

import (
	"sort"

	"github.com/jmoiron/sqlx"
)

// On PostgreSQL a reservation batch makes its three reads (request ids
// seen before, devices already provisioned, its pools locked) in one round
// trip instead of three: none depends on another's answer. The devices
// and pools of every member are read, replays' included (their answers
// are not used); every pool of the batch is locked in id order, as
// lockPools locks them (no deadlocks between replicas), and advanced after
// the batch assigned its SNRs (advancePools), so a single pool too goes
// through the lock rather than a claim (sqlClaimPool), which needed the
// batch's need and so the first two answers.
type reserveReads struct {
	replays map[string]*Reservation
	taken   []string
	pools   map[string]*poolHead
}

// pipedSel is one query of selAll and how its rows are read.
type pipedSel struct {
	query string
	args  []any
	scan  func(rows rowsIter) error
}

// readReserve makes reserveBatch's three reads in one round trip
// (PostgreSQL, dialect pipeline).
func (tx *Tx) readReserve(batch []*reserveWork) (*reserveReads, error) {
	ids := make([]string, 0, len(batch))
	var serials []string
	seenID, seenSerial, seenPool := map[string]bool{}, map[string]bool{}, map[string]bool{}
	var pools []string
	for _, p := range batch {
		if !seenID[p.req.RequestID] {
			seenID[p.req.RequestID] = true
			ids = append(ids, p.req.RequestID)
		}
		if s := p.req.DeviceSerial; s != "" && !seenSerial[s] {
			seenSerial[s] = true
			serials = append(serials, s)
		}
		if !seenPool[p.req.Pool] {
			seenPool[p.req.Pool] = true
			pools = append(pools, p.req.Pool)
		}
	}
	sort.Strings(pools)
	var rr []reservationRow
	var heads []*poolHead
	out := &reserveReads{replays: map[string]*Reservation{}, pools: map[string]*poolHead{}}
	var sels []pipedSel
	add := func(query string, list []string, scan func(rows rowsIter) error) error {
		q, args, err := tx.in(query, list)
		if err != nil {
			return err
		}
		sels = append(sels, pipedSel{query: q, args: args, scan: scan})
		return nil
	}
	if err := add(sqlReservationSelect+`WHERE r.request_id IN (?)`, ids, func(rows rowsIter) error {
		return sqlx.StructScan(rows.(sqlxRows), &rr)
	}); err != nil {
		return nil, err
	}
	if len(serials) > 0 {
		if err := add(sqlProvisionedDevices, serials, func(rows rowsIter) error {
			for rows.Next() {
				var s string
				if err := rows.Scan(&s); err != nil {
					return err
				}
				out.taken = append(out.taken, s)
			}
			return rows.Err()
		}); err != nil {
			return nil, err
		}
	}
	if err := add(sqlPoolsForUpdate+" ORDER BY id"+tx.db.sql.forUpdate, pools, func(rows rowsIter) error {
		return sqlx.StructScan(rows.(sqlxRows), &heads)
	}); err != nil {
		return nil, err
	}
	if err := tx.selAll(sels); err != nil {
		return nil, translate(err, "look up reservations, devices and pools")
	}
	for _, row := range rr {
		r, err := tx.loadReservation(row)
		if err != nil {
			return nil, err
		}
		out.replays[row.RequestID] = r
	}
	for _, h := range heads {
		h.start = h.NextSNR
		out.pools[h.Name] = h
	}
	return out, nil
}

// sqlxRows is what sqlx.StructScan reads.
type sqlxRows interface {
	rowsIter
	Columns() ([]string, error)
}
