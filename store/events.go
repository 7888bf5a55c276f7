package store

import (
	"time"
)

// Event types. Every ledger change emits exactly one Event per affected
// device (or pool, station, issuer) inside the transaction that makes the
// change; the sinks (audit log, register outbox) record it in that same
// transaction, so an event exists if and only if its change committed.
const (
	EventPoolCreated     = "pool.created"
	EventTACAdded        = "tac.added"
	EventIMEIReserved    = "imei.reserved"
	EventIMEIBound       = "imei.bound"
	EventIMEIVoided      = "imei.voided"
	EventIMEIRevoked     = "imei.revoked"
	EventDeviceReissued  = "device.reissued"
	EventStationEnrolled = "station.enrolled"
	EventStationDisabled = "station.disabled"
	// EventPersonEnrolled, EventPersonDisabled: a role certificate issued
	// to one person, and disabled.
	EventPersonEnrolled  = "person.enrolled"
	EventPersonDisabled  = "person.disabled"
	EventIssuerActivated = "issuer.activated"
	EventIssuerRevoked   = "issuer.revoked"
	// EventCACertified: a root in this ledger certified another
	// deployment's issuing CA (a factory site's, in a ceremony at HQ).
	EventCACertified   = "ca.certified"
	EventConfigChanged = "config.changed"
	// EventRollbackAcknowledged: an operator acknowledged serving a
	// ledger older than a published audit checkpoint (`tacline restore ack`).
	EventRollbackAcknowledged = "ledger.rollback_acknowledged"
)

// Event is one ledger change, as the audit log and the register see it.
// Fields that do not apply are empty.
type Event struct {
	Type         string    // one of the Event* constants
	Time         time.Time // when the change committed (store clock, UTC, microseconds)
	Actor        string    // who asked: station id, operator identity, "recovery", "cli"
	RequestID    string    // the request that caused it, if any
	Pool         string    // pool name
	TAC          string    // 8 digits
	IMEIs        []string  // 15-digit IMEIs of the one device the event is about
	DeviceSerial string
	CertSerial   string // hex
	Reason       string
	// Attrs carries further type-specific facts (sorted by key when encoded).
	Attrs map[string]string
}

// Sink records events inside the ledger transaction that produced them.
// Append must use only tx; an error rolls the whole change back.
type Sink interface {
	Append(tx *Tx, events []Event) error
}

// AddSink registers a sink for every later ledger change. It must be called
// before the DB is used concurrently (at start-up).
func (db *DB) AddSink(s Sink) { db.sinks = append(db.sinks, s) }

// Emit queues events to be handed to the sinks when the transaction's
// function returns successfully, before commit. Packages outside store that
// change ledger state in a transaction (the provisioner's station records,
// the CA's issuer records) emit their events through it.
func (tx *Tx) Emit(events ...Event) {
	for i := range events {
		if events[i].Time.IsZero() {
			events[i].Time = tx.Now().Truncate(time.Microsecond)
		}
	}
	tx.events = append(tx.events, events...)
}

// flush hands the queued events to every sink.
func (tx *Tx) flush() error {
	if len(tx.events) == 0 {
		return nil
	}
	tx.audit = auditSpan{}
	for _, s := range tx.db.sinks {
		if err := s.Append(tx, tx.events); err != nil {
			return err
		}
	}
	tx.events = nil
	return nil
}
