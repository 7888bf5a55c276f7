package store

import (
	"context"
	"database/sql"
	"math/big"
	"strings"
	"time"

	"github.com/tacline/tacline/tacerr"
)

// PersonCert is a role certificate issued to one person (`tacline station
// enroll --roles R --person NAME`), or one enrolled before the ledger
// recorded them and disabled by its serial (DisableRoleCertificate: no
// person, no roles).
type PersonCert struct {
	CertSerial string // lower-case hex
	Person     string // empty: recorded by its serial alone
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
	c := PersonCert{CertSerial: r.CertSerial, Person: r.Person, EnrolledAt: micros(r.EnrolledAt), DisabledAt: nullMicros(r.DisabledAt)}
	if r.Roles != "" {
		c.Roles = strings.Split(r.Roles, ",")
	}
	return c
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
			return tacerr.Field(tacerr.NotFound, "person", "%q has no enabled role certificate in this ledger; %s", person, UnrecordedRoleCerts)
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

// UnrecordedRoleCerts says what disabling a person cannot reach.
const UnrecordedRoleCerts = "role certificates enrolled before migration 0023 name no person (subject \"role <role>\") and the ledger never recorded them, " +
	"so it cannot tell whose they are: disable each by its serial (tacline station disable --serial S; openssl x509 -noout -serial -in role-<role>/cert.pem)"

// DisableRoleCertificate disables the role certificate of the station CA
// with serial (hex, colons allowed) and emits person.disabled; the API
// refuses it at its next request. A certificate the ledger does not record
// (enrolled before migration 0023, subject "role <role>", whose person no
// one recorded) is recorded here by its serial alone (no person, no
// roles), disabled. invalid_input when serial is not hex or is a
// station's or a site's certificate (disable those by their name);
// invalid_state when it is disabled already.
func (db *DB) DisableRoleCertificate(ctx context.Context, serial, actor string) (PersonCert, error) {
	n, ok := new(big.Int).SetString(strings.ReplaceAll(serial, ":", ""), 16)
	if !ok || n.Sign() <= 0 {
		return PersonCert{}, tacerr.Field(tacerr.InvalidInput, "serial", "%q is not a certificate serial in hex (as openssl x509 -noout -serial prints it)", serial)
	}
	serial = n.Text(16)
	var out PersonCert
	err := db.InTx(ctx, func(tx *Tx) error {
		for _, o := range []struct{ table, name, what string }{{"stations", "id", "station"}, {"sites", "name", "site"}} {
			var names []string
			if err := tx.sel(&names, tx.rebind(`SELECT `+o.name+` FROM `+o.table+` WHERE ltrim(lower(replace(cert_serial, ':', '')), '0') = ?`), serial); err != nil {
				return translate(err, "look up "+o.what+" certificates")
			}
			if len(names) > 0 {
				return tacerr.Field(tacerr.InvalidInput, "serial", "%s is the certificate of %s %s, not a role certificate: disable the %s by its name", serial, o.what, names[0], o.what)
			}
		}
		var rows []personRow
		if err := tx.sel(&rows, tx.rebind(sqlSelectPeople+` WHERE cert_serial = ?`), serial); err != nil {
			return translate(err, "look up role certificate")
		}
		now := tx.Now().UnixMicro()
		switch {
		case len(rows) == 0:
			rows = append(rows, personRow{CertSerial: serial, EnrolledAt: now})
			if _, err := tx.exec(tx.rebind(`INSERT INTO people (cert_serial, person, roles, enrolled_at, disabled_at) VALUES (?,'','',?,?)`), serial, now, now); err != nil {
				return translate(err, "record role certificate")
			}
		case rows[0].DisabledAt.Valid:
			return tacerr.Field(tacerr.InvalidState, "serial", "role certificate %s was disabled already, at %s", serial, micros(rows[0].DisabledAt.Int64).UTC().Format(time.RFC3339))
		default:
			if _, err := tx.exec(tx.rebind(`UPDATE people SET disabled_at = ? WHERE cert_serial = ?`), now, serial); err != nil {
				return translate(err, "disable role certificate")
			}
		}
		rows[0].DisabledAt = sql.NullInt64{Int64: now, Valid: true}
		out = rows[0].cert()
		tx.Emit(Event{Type: EventPersonDisabled, Actor: actor, Attrs: map[string]string{"person": out.Person, "cert_serial": serial}})
		return nil
	})
	return out, err
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
