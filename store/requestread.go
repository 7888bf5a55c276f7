package store

import (
	"context"
	"database/sql"
	"strings"

	"github.com/tacline/tacline/tacerr"
)

// StationRequestCheck is what a provisioning request reads before it
// reserves anything (StationRequestCheckOf): the calling station's record
// and the request check (NewRequestCheck).
type StationRequestCheck struct {
	// Station is the calling station's record; StationErr is not_found
	// when no station has that id (then Station is zero).
	Station    StationRecord
	StationErr error
	RequestCheck
}

// sqlStationRequestCheck is sqlRequestCheck with the station's row joined
// in: one statement (one round trip, one implicit transaction) for the
// station's authentication and the request's checks.
var sqlStationRequestCheck = func() string {
	i := strings.LastIndex(sqlRequestCheck, "\n\tFROM ")
	if i < 0 {
		panic("store: sqlRequestCheck has no FROM line")
	}
	return sqlRequestCheck[:i] + `,
	CASE WHEN s.id IS NULL THEN 0 ELSE 1 END AS st_found, COALESCE(s.id, '') AS st_id, COALESCE(s.factory, '') AS st_factory,
	COALESCE(s.line, '') AS st_line, COALESCE(s.pools, '') AS st_pools, COALESCE(s.cert_serial, '') AS st_cert_serial,
	COALESCE(s.description, '') AS st_description, COALESCE(s.enrolled_at, 0) AS st_enrolled_at, s.disabled_at AS st_disabled_at` +
		sqlRequestCheck[i:] + ` LEFT JOIN stations s ON s.id = ?`
}()

// StationRequestCheckOf reads, in one statement, the station's record (what
// Station reads) and what NewRequestCheck reads for requestID, the device
// serial and the key (by SPKI hash). An unknown station is not an error of
// the read: StationErr says not_found, as Station would.
func (db *DB) StationRequestCheckOf(ctx context.Context, station, requestID, serial string, spkiHash []byte) (StationRequestCheck, error) {
	var r struct {
		Exists int    `db:"device_exists"`
		Owner  string `db:"key_owner"`
		Found  int    `db:"found"`
		issuanceRow
		StFound       int           `db:"st_found"`
		StID          string        `db:"st_id"`
		StFactory     string        `db:"st_factory"`
		StLine        string        `db:"st_line"`
		StPools       string        `db:"st_pools"`
		StCertSerial  string        `db:"st_cert_serial"`
		StDescription string        `db:"st_description"`
		StEnrolledAt  int64         `db:"st_enrolled_at"`
		StDisabledAt  sql.NullInt64 `db:"st_disabled_at"`
	}
	if err := db.getR(ctx, &r, db.rebind(sqlStationRequestCheck), serial, spkiHash, requestID, station); err != nil {
		return StationRequestCheck{}, translate(err, "look up station, request, device and key")
	}
	c := StationRequestCheck{RequestCheck: RequestCheck{DeviceExists: r.Exists != 0, KeyOwner: r.Owner}}
	if r.Found != 0 {
		c.Issuance = r.issuanceRow.issuance()
	}
	if r.StFound == 0 {
		c.StationErr = tacerr.Field(tacerr.NotFound, "station", "station %q is not enrolled", station)
	} else {
		c.Station = stationRow{ID: r.StID, Factory: r.StFactory, Line: r.StLine, Pools: r.StPools, CertSerial: r.StCertSerial,
			Description: r.StDescription, EnrolledAt: r.StEnrolledAt, DisabledAt: r.StDisabledAt}.record()
	}
	return c, nil
}
