package reconcile

import (
	"context"
	"math/bits"

	"github.com/tacline/tacline/imei"
)

// MemLedger is a synthetic ledger held in memory as bitsets. Its Load
// feeds the Index through exactly the calls DBLedger makes (AddTAC per TAC,
// Set per row), so a benchmark over it exercises the same engine as a run
// over the database, minus the database's own reading time.
type MemLedger struct {
	tacs []uint32
	sets map[uint32]*[4]*bitset // Reserved, Bound, Voided, Revoked
}

// NewMemLedger returns an empty synthetic ledger.
func NewMemLedger() *MemLedger { return &MemLedger{sets: map[uint32]*[4]*bitset{}} }

// Add records one ledger row.
func (l *MemLedger) Add(tac, snr uint32, st State) {
	s := l.sets[tac]
	if s == nil {
		s = new([4]*bitset)
		l.sets[tac] = s
		l.tacs = append(l.tacs, tac)
	}
	if st < Reserved || st > Revoked {
		return
	}
	if s[st-1] == nil {
		s[st-1] = new(bitset)
	}
	s[st-1].set(snr)
}

// Load implements Ledger.
func (l *MemLedger) Load(ctx context.Context, x *Index) error {
	for _, tac := range l.tacs {
		x.AddTAC(tac)
		for k, b := range l.sets[tac] {
			if b == nil {
				continue
			}
			for i, v := range b {
				for v != 0 {
					j := uint64(bits.TrailingZeros64(v))
					v &= v - 1
					if err := x.Set(uint64(tac)*imei.SNRsPerTAC+uint64(i)*64+j, State(k+1)); err != nil {
						return err
					}
				}
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}
