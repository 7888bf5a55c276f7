package register

import (
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
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

const (
	sqlTACNames         = `SELECT brand, model_name FROM tacs WHERE tac = ?`
	sqlInsertOutboxHead = `INSERT INTO register_outbox
    (idempotency_key, imei14, tac, event, device_id, model, brand, occurred_at, next_attempt_at, created_at)
VALUES `
)

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

// outboxCols is the number of values per outbox row.
const outboxCols = 10

// maxOutboxRows bounds one multi-row insert (below both databases'
// parameter limits).
const maxOutboxRows = 1000

// Append implements store.Sink: one row per IMEI of each reportable event,
// with brand and model read from the tacs table through tx (once per TAC and
// transaction), all rows of the transaction's events inserted with one
// multi-row statement.
func (Outbox) Append(tx *store.Tx, events []store.Event) error {
	type names struct{ brand, model string }
	cache := map[uint32]names{}
	now := tx.Now().UnixMicro()
	var args []any
	rows := 0
	flush := func() error {
		if rows == 0 {
			return nil
		}
		var sb strings.Builder
		sb.Grow(len(sqlInsertOutboxHead) + rows*(2*outboxCols+3))
		sb.WriteString(sqlInsertOutboxHead)
		for i := 0; i < rows; i++ {
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString("(?,?,?,?,?,?,?,?,?,?)")
		}
		res, err := tx.Exec(tx.Rebind(sb.String()), args...)
		if err != nil {
			return store.Translate(err, fmt.Sprintf("register outbox: insert %d rows", rows))
		}
		if k, err := res.RowsAffected(); err != nil || k != int64(rows) {
			return tacerr.New(tacerr.Internal, "register outbox: inserting %d rows touched %d (%v)", rows, k, err)
		}
		args, rows = args[:0], 0
		return nil
	}
	keys := newKeys()
	for _, ev := range events {
		event := registerEvent(ev.Type)
		if event == "" {
			continue
		}
		for _, s := range ev.IMEIs {
			m, err := imei.Parse(s)
			if err != nil {
				return tacerr.Wrap(tacerr.Internal, err, "register outbox: event %s carries IMEI %q", ev.Type, s)
			}
			n, ok := cache[m.TAC()]
			if !ok {
				// QueryRowx goes through the ledger's statement cache.
				err := tx.QueryRowx(tx.Rebind(sqlTACNames), m.TAC()).Scan(&n.brand, &n.model)
				if errors.Is(err, sql.ErrNoRows) {
					return tacerr.New(tacerr.TACUnknown, "register outbox: TAC %s of IMEI %s is not in the catalogue", m.TACString(), m)
				}
				if err != nil {
					return store.Translate(err, "register outbox: read TAC "+m.TACString())
				}
				cache[m.TAC()] = n
			}
			device := wire.DeviceIDOf(ev.DeviceSerial, m)
			args = append(args, keys.next(), m.Uint64(), m.TAC(), event, device, n.model, n.brand, ev.Time.UnixMicro(), now, now)
			rows++
			if rows == maxOutboxRows {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
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
