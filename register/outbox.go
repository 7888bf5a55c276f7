package register

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/register/wire"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// Outbox is the store.Sink that turns ledger events into outbox rows.
// Register it once at start-up: db.AddSink(register.Outbox{}).
type Outbox struct{}

var _ store.Sink = Outbox{}

// registerEvent maps a ledger event type to the register's event, or "".
func registerEvent(t string) string {
	switch t {
	case store.EventIMEIBound:
		return wire.EventRegistered
	case store.EventIMEIVoided:
		return wire.EventVoided
	case store.EventIMEIRevoked:
		return wire.EventRevoked
	case store.EventDeviceReissued:
		return wire.EventUpdated
	}
	return ""
}

// Append implements store.Sink: one row per IMEI of each reportable event,
// with brand and model read from the catalogue through tx (one read for
// every TAC of the transaction's events), all rows of the transaction's
// events appended at once (store's multi-row writer).
func (Outbox) Append(tx *store.Tx, events []store.Event) error {
	var tacs []uint32
	seen := map[uint32]bool{}
	for _, ev := range events {
		if registerEvent(ev.Type) == "" {
			continue
		}
		for _, s := range ev.IMEIs {
			if m, err := imei.Parse(s); err == nil && !seen[m.TAC()] {
				seen[m.TAC()] = true
				tacs = append(tacs, m.TAC())
			}
		}
	}
	names, err := tx.TACNamesOf(tacs) // no read when there is nothing to report
	if err != nil {
		return err
	}
	rows, err := Rows(events, func(tac uint32) (string, string, bool, error) {
		n, ok := names[tac]
		return n.Brand, n.Model, ok, nil
	})
	if err != nil || len(rows) == 0 {
		return err
	}
	return tx.AppendOutbox(rows)
}

// Rows returns the outbox rows of events (one per IMEI of each reportable
// event, fresh idempotency keys); names gives a TAC's brand and model (once
// per TAC). The sink writes them; a bulk loader may too.
func Rows(events []store.Event, names func(tac uint32) (brand, model string, found bool, err error)) ([]store.OutboxRow, error) {
	type bm struct{ brand, model string }
	cache := map[uint32]bm{}
	var rows []store.OutboxRow
	keys := newKeys()
	for _, ev := range events {
		event := registerEvent(ev.Type)
		if event == "" {
			continue
		}
		for _, s := range ev.IMEIs {
			m, err := imei.Parse(s)
			if err != nil {
				return nil, tacerr.Wrap(tacerr.Internal, err, "register outbox: event %s carries IMEI %q", ev.Type, s)
			}
			n, ok := cache[m.TAC()]
			if !ok {
				brand, model, found, err := names(m.TAC())
				if err != nil {
					return nil, err
				}
				if !found {
					return nil, tacerr.New(tacerr.TACUnknown, "register outbox: TAC %s of IMEI %s is not in the catalogue", m.TACString(), m)
				}
				n = bm{brand, model}
				cache[m.TAC()] = n
			}
			rows = append(rows, store.OutboxRow{Key: keys.next(), IMEI14: m.Uint64(), TAC: m.TAC(), Event: event,
				DeviceID: wire.DeviceIDOf(ev.DeviceSerial, m), Model: n.model, Brand: n.brand, OccurredAt: ev.Time})
		}
	}
	return rows, nil
}

// keySource makes idempotency keys: "tl-", 16 hex digits of the time in
// nanoseconds, 16 hex digits of random bits. Keys made later sort after
// earlier ones (up to clock steps), so the unique index on
// register_outbox.idempotency_key grows at its right edge instead of
// touching a random page per row; the 64 random bits keep keys unique across
// processes and replicas made in the same nanosecond.
type keySource struct {
	t   uint64
	rnd [8]byte
}

func newKeys() *keySource {
	k := &keySource{t: uint64(time.Now().UnixNano())}
	rand.Read(k.rnd[:])
	return k
}

// next returns a fresh key; keys of one source differ in their time part
// (it counts up from the source's creation time).
func (k *keySource) next() string {
	var b [35]byte
	copy(b[:], "tl-")
	var t [8]byte
	binary.BigEndian.PutUint64(t[:], k.t)
	k.t++
	hex.Encode(b[3:19], t[:])
	hex.Encode(b[19:], k.rnd[:])
	return string(b[:])
}

// newKey returns one fresh idempotency key.
func newKey() string { return newKeys().next() }
