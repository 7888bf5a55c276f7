package reconcile

import (
	"context"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/lifecycle"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// State is an IMEI's state in the ledger, as reconciliation sees it.
type State uint8

// The ledger states. Absent means no ledger row.
const (
	Absent State = iota
	Reserved
	Bound
	Voided
	Revoked
)

func (s State) String() string {
	switch s {
	case Reserved:
		return "RESERVED"
	case Bound:
		return "BOUND"
	case Voided:
		return "VOIDED"
	case Revoked:
		return "REVOKED"
	}
	return "ABSENT"
}

// words is the number of 64-bit words of a bitset over one TAC's serials.
const words = (imei.SNRsPerTAC + 63) / 64

// bitset holds one bit per serial number of a TAC: 125,000 bytes.
type bitset [words]uint64

func (b *bitset) set(i uint32)      { b[i>>6] |= 1 << (i & 63) }
func (b *bitset) has(i uint32) bool { return b[i>>6]&(1<<(i&63)) != 0 }

// tacSets is everything known about one of the manufacturer's TACs. The
// ledger sets are allocated when the first row of that state arrives, the
// seen set when the register names the TAC first.
type tacSets struct {
	tac                              uint32
	bound, voided, revoked, reserved *bitset
	seen                             *bitset
	// devices holds, per serial number bound here, a hash of the device
	// serial it is bound to (deviceHash; 0: not known), allocated with the
	// first such row (4 MB): a register row naming another device is a
	// copy of the IMEI registered for someone else's device.
	devices []uint32
}

func (t *tacSets) state(snr uint32) State {
	switch {
	case t.bound != nil && t.bound.has(snr):
		return Bound
	case t.voided != nil && t.voided.has(snr):
		return Voided
	case t.revoked != nil && t.revoked.has(snr):
		return Revoked
	case t.reserved != nil && t.reserved.has(snr):
		return Reserved
	}
	return Absent
}

// Index is the ledger's state for the manufacturer's TACs, one bitset per
// TAC and state, plus what the register has been seen to hold. Its memory
// is at most 5 x 125 KB per TAC, plus 4 MB per TAC with bound IMEIs for
// their devices, whatever the number of IMEIs.
type Index struct {
	tacs   map[uint32]*tacSets
	last   *tacSets // the TAC of the previous lookup: register files come in runs
	ledger int64    // ledger rows loaded
}

// NewIndex returns an empty index.
func NewIndex() *Index { return &Index{tacs: make(map[uint32]*tacSets)} }

// AddTAC declares tac as one of the manufacturer's TACs: register rows
// under it are reconciled, rows under other TACs are counted and ignored.
func (x *Index) AddTAC(tac uint32) {
	if x.tacs[tac] == nil {
		x.tacs[tac] = &tacSets{tac: tac}
	}
}

// Set records a ledger row. Rows of undeclared TACs declare them (the
// ledger cannot hold IMEIs outside the manufacturer's TACs).
func (x *Index) Set(imei14 uint64, st State) error {
	if imei14 >= (imei.MaxTAC+1)*imei.SNRsPerTAC {
		return tacerr.New(tacerr.LedgerInvariant, "ledger IMEI %d has more than 14 digits", imei14)
	}
	tac, snr := uint32(imei14/imei.SNRsPerTAC), uint32(imei14%imei.SNRsPerTAC)
	x.AddTAC(tac)
	t := x.tacs[tac]
	var p **bitset
	switch st {
	case Bound:
		p = &t.bound
	case Voided:
		p = &t.voided
	case Revoked:
		p = &t.revoked
	case Reserved:
		p = &t.reserved
	default:
		return tacerr.New(tacerr.Internal, "ledger state %d for IMEI %d", st, imei14)
	}
	if *p == nil {
		*p = new(bitset)
	}
	(*p).set(snr)
	x.ledger++
	return nil
}

// SetDevice records the serial of the device a bound ledger IMEI is bound
// to (after Set). Rows never set are not compared with the register's
// device ids.
func (x *Index) SetDevice(imei14 uint64, serial []byte) {
	if imei14 >= (imei.MaxTAC+1)*imei.SNRsPerTAC || len(serial) == 0 {
		return
	}
	tac, snr := uint32(imei14/imei.SNRsPerTAC), uint32(imei14%imei.SNRsPerTAC)
	x.AddTAC(tac)
	t := x.tacs[tac]
	if t.devices == nil {
		t.devices = make([]uint32, imei.SNRsPerTAC)
	}
	t.devices[snr] = deviceHash(serial)
}

// deviceHash is a 32-bit FNV-1a hash of a device serial, never 0. Two
// different serials share one with a chance of about 1 in 2^31, so a
// register row naming another device goes unnoticed with that chance.
func deviceHash(serial []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range serial {
		h ^= uint32(c)
		h *= 16777619
	}
	return h | 1
}

// lookup returns the sets of tac, or nil when it is not ours.
func (x *Index) lookup(tac uint32) *tacSets {
	if x.last != nil && x.last.tac == tac {
		return x.last
	}
	t := x.tacs[tac]
	if t != nil {
		x.last = t
	}
	return t
}

// Ledger feeds an Index from some source of ledger rows: the database
// (DBLedger) or a synthetic ledger (benchmarks). Load calls AddTAC for each
// of the manufacturer's TACs and Set once per ledger row.
type Ledger interface {
	Load(ctx context.Context, x *Index) error
}

// DBLedger reads the ledger through the store's streaming iterators (rows
// are not held in memory).
type DBLedger struct{ DB *store.DB }

// stateOf maps a ledger state to the index's (0: unknown).
func stateOf(s lifecycle.State) State {
	switch s {
	case store.StateReserved:
		return Reserved
	case store.StateBound:
		return Bound
	case store.StateVoided:
		return Voided
	case store.StateRevoked:
		return Revoked
	}
	return 0
}

// Load implements Ledger.
func (l DBLedger) Load(ctx context.Context, x *Index) error {
	if err := l.DB.CatalogTACs(ctx, func(tac uint32) error { x.AddTAC(tac); return nil }); err != nil {
		return err
	}
	return l.DB.IMEIStates(ctx, func(n uint64, state lifecycle.State, serial []byte) error {
		s := stateOf(state)
		if s == 0 {
			return tacerr.New(tacerr.LedgerInvariant, "ledger IMEI %d has an unknown state", n)
		}
		if err := x.Set(n, s); err != nil {
			return err
		}
		if s == Bound {
			x.SetDevice(n, serial)
		}
		return nil
	})
}
