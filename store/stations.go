package store

import (
	"context"
	"database/sql"
	"strings"
	"time"

	"github.com/tacline/tacline/tacerr"
)

// StationRecord is an enrolled factory station.
type StationRecord struct {
	ID          string
	Factory     string
	Line        string
	Pools       []string
	CertSerial  string
	Description string
	EnrolledAt  time.Time
	DisabledAt  time.Time // zero while enabled
}

type stationRow struct {
	ID          string        `db:"id"`
	Factory     string        `db:"factory"`
	Line        string        `db:"line"`
	Pools       string        `db:"pools"`
	CertSerial  string        `db:"cert_serial"`
	Description string        `db:"description"`
	EnrolledAt  int64         `db:"enrolled_at"`
	DisabledAt  sql.NullInt64 `db:"disabled_at"`
}

func (r stationRow) record() StationRecord {
	var pools []string
	if r.Pools != "" {
		pools = strings.Split(r.Pools, ",")
	}
	return StationRecord{ID: r.ID, Factory: r.Factory, Line: r.Line, Pools: pools, CertSerial: r.CertSerial,
		Description: r.Description, EnrolledAt: micros(r.EnrolledAt), DisabledAt: nullMicros(r.DisabledAt)}
}

const sqlSelectStations = `SELECT id, factory, line, pools, cert_serial, description, enrolled_at, disabled_at FROM stations`

// EnrollStation records a station (or re-enrolls it with a new certificate,
// enabling it again) and emits station.enrolled. Every pool must exist.
func (db *DB) EnrollStation(ctx context.Context, s StationRecord, actor string) error {
	if s.ID == "" {
		return tacerr.Field(tacerr.InvalidInput, "id", "station id is required")
	}
	return db.InTx(ctx, func(tx *Tx) error {
		for _, p := range s.Pools {
			var n int
			// At a site, a station names an HQ pool it holds leases of.
			if err := tx.get(&n, tx.rebind(`SELECT (SELECT COUNT(*) FROM pools WHERE name = ?) + (SELECT COUNT(*) FROM held_leases WHERE hq_pool = ?)`), p, p); err != nil {
				return translate(err, "look up pool")
			}
			if n == 0 {
				return tacerr.Field(tacerr.PoolNotFound, "pools", "pool %q does not exist; create it first", p)
			}
		}
		now := tx.Now().UnixMicro()
		_, err := tx.exec(tx.rebind(`INSERT INTO stations (id, factory, line, pools, cert_serial, description, enrolled_at) VALUES (?,?,?,?,?,?,?)
			ON CONFLICT (id) DO UPDATE SET factory = excluded.factory, line = excluded.line, pools = excluded.pools,
			cert_serial = excluded.cert_serial, description = excluded.description, enrolled_at = excluded.enrolled_at, disabled_at = NULL`),
			s.ID, s.Factory, s.Line, strings.Join(s.Pools, ","), s.CertSerial, s.Description, now)
		if err != nil {
			return translate(err, "enroll station")
		}
		tx.Emit(Event{Type: EventStationEnrolled, Actor: actor, Attrs: map[string]string{"station": s.ID, "factory": s.Factory,
			"line": s.Line, "pools": strings.Join(s.Pools, ","), "cert_serial": s.CertSerial}})
		return nil
	})
}

// DisableStation disables a station; its next request is refused.
func (db *DB) DisableStation(ctx context.Context, id, actor string) error {
	return db.InTx(ctx, func(tx *Tx) error {
		res, err := tx.exec(tx.rebind(`UPDATE stations SET disabled_at = ? WHERE id = ? AND disabled_at IS NULL`), tx.Now().UnixMicro(), id)
		if err != nil {
			return translate(err, "disable station")
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return tacerr.Field(tacerr.NotFound, "id", "no enabled station %q", id)
		}
		tx.Emit(Event{Type: EventStationDisabled, Actor: actor, Attrs: map[string]string{"station": id}})
		return nil
	})
}

// Station returns one station or not_found.
func (db *DB) Station(ctx context.Context, id string) (StationRecord, error) {
	var r stationRow
	if err := db.getR(ctx, &r, db.r.Rebind(sqlSelectStations+` WHERE id = ?`), id); err != nil {
		if noRows(err) {
			return StationRecord{}, tacerr.Field(tacerr.NotFound, "station", "station %q is not enrolled", id)
		}
		return StationRecord{}, translate(err, "look up station")
	}
	return r.record(), nil
}

// Stations lists every station.
func (db *DB) Stations(ctx context.Context) ([]StationRecord, error) {
	var rows []stationRow
	if err := db.r.SelectContext(ctx, &rows, sqlSelectStations+` ORDER BY id`); err != nil {
		return nil, translate(err, "list stations")
	}
	out := make([]StationRecord, len(rows))
	for i, r := range rows {
		out[i] = r.record()
	}
	return out, nil
}
