package store

import (
	"context"
	"database/sql"
	"strings"
	"time"

	"github.com/tacline/tacline/tacerr"
)

// PersonCert is a role certificate issued to one person (`tacline station
// enroll --roles R --person NAME`).
type PersonCert struct {
	CertSerial string // lower-case hex
	Person     string
	Roles      []string
	EnrolledAt time.Time
	DisabledAt time.Time // zero while enabled
}

type personRow struct {
	CertSerial string        `db:"cert_serial"`
	Person     string        `db:"person"`
	Roles      string        `db:"roles"`
	EnrolledAt int64         `db:"enrolled_at"`
	DisabledAt sql.NullInt64 `db:"disabled_at"`
}

func (r personRow) cert() PersonCert {
	return PersonCert{CertSerial: r.CertSerial, Person: r.Person, Roles: strings.Split(r.Roles, ","),
		EnrolledAt: micros(r.EnrolledAt), DisabledAt: nullMicros(r.DisabledAt)}
}

const sqlSelectPeople = `SELECT cert_serial, person, roles, enrolled_at, disabled_at FROM people`

// EnrollPerson records a person's role certificate and emits
// person.enrolled.
func (db *DB) EnrollPerson(ctx context.Context, p PersonCert, actor string) error {
	switch {
	case p.Person == "":
		return tacerr.Field(tacerr.InvalidInput, "person", "the person's name is required")
	case p.CertSerial == "":
		return tacerr.Field(tacerr.InvalidInput, "cert_serial", "the certificate's serial is required")
	case len(p.Roles) == 0:
		return tacerr.Field(tacerr.InvalidInput, "roles", "a role certificate names at least one role")
	}
	return db.InTx(ctx, func(tx *Tx) error {
		_, err := tx.exec(tx.rebind(`INSERT INTO people (cert_serial, person, roles, enrolled_at) VALUES (?,?,?,?)`),
			strings.ToLower(p.CertSerial), p.Person, strings.Join(p.Roles, ","), tx.Now().UnixMicro())
		if err != nil {
			return translate(err, "enroll person")
		}
		tx.Emit(Event{Type: EventPersonEnrolled, Actor: actor, Attrs: map[string]string{"person": p.Person,
			"roles": strings.Join(p.Roles, ","), "cert_serial": strings.ToLower(p.CertSerial)}})
		return nil
	})
}

// DisablePerson disables every enabled role certificate of person (one
// person.disabled event each) and returns their serials; the API refuses
// them at their next request. not_found when the person has none.
func (db *DB) DisablePerson(ctx context.Context, person, actor string) ([]string, error) {
	var serials []string
	err := db.InTx(ctx, func(tx *Tx) error {
		serials = serials[:0]
		if err := tx.sel(&serials, tx.rebind(`SELECT cert_serial FROM people WHERE person = ? AND disabled_at IS NULL ORDER BY cert_serial`), person); err != nil {
			return translate(err, "look up person")
		}
		if len(serials) == 0 {
			return tacerr.Field(tacerr.NotFound, "person", "%q has no enabled role certificate in this ledger (certificates issued before tacline recorded them cannot be disabled here: they expire)", person)
		}
		if _, err := tx.exec(tx.rebind(`UPDATE people SET disabled_at = ? WHERE person = ? AND disabled_at IS NULL`), tx.Now().UnixMicro(), person); err != nil {
			return translate(err, "disable person")
		}
		for _, s := range serials {
			tx.Emit(Event{Type: EventPersonDisabled, Actor: actor, Attrs: map[string]string{"person": person, "cert_serial": s}})
		}
		return nil
	})
	return serials, err
}

// PersonCertificate returns the role certificate with serial (lower-case
// hex) or not_found.
func (db *DB) PersonCertificate(ctx context.Context, serial string) (PersonCert, error) {
	var r personRow
	if err := db.getR(ctx, &r, db.r.Rebind(sqlSelectPeople+` WHERE cert_serial = ?`), strings.ToLower(serial)); err != nil {
		if noRows(err) {
			return PersonCert{}, tacerr.Field(tacerr.NotFound, "cert_serial", "no role certificate with serial %s is recorded", serial)
		}
		return PersonCert{}, translate(err, "look up role certificate")
	}
	return r.cert(), nil
}

// People lists every recorded role certificate, by person.
func (db *DB) People(ctx context.Context) ([]PersonCert, error) {
	var rows []personRow
	if err := db.r.SelectContext(ctx, &rows, sqlSelectPeople+` ORDER BY person, enrolled_at`); err != nil {
		return nil, translate(err, "list people")
	}
	out := make([]PersonCert, len(rows))
	for i, r := range rows {
		out[i] = r.cert()
	}
	return out, nil
}
