package storetest

import (
	"context"
	"fmt"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/store"
)

// Raw ledger rows for tests that stand in for the allocator and the
// provisioner (the register packages' tests): written with plain SQL,
// without events.
const (
	sqlSeedTAC = `INSERT INTO tacs (tac, brand, model_name, model_number, device_type, radio_interfaces, imeis_per_device, allocation_date, created_at)
VALUES (?, ?, ?, ?, 'Smartphone', 'LTE', 5, '2026-01-01', 0)`
	sqlSeedPool   = `INSERT INTO pools (name, tac, snr_start, snr_end, next_snr, created_at) VALUES (?, ?, 0, 999999, 1000000, 0)`
	sqlSeedPoolID = `SELECT id FROM pools WHERE name = ?`
	sqlSeedRes    = `INSERT INTO reservations (request_id, request_hash, pool_id, caller, kind, device_serial, devices, per_device, created_at)
VALUES (?, ?, ?, 'test', 'provision', ?, 1, 1, 0)`
	sqlSeedResID = `SELECT id FROM reservations WHERE request_id = ?`
	sqlSeedIMEI  = `INSERT INTO imeis (imei14, pool_id, reservation_id, grp, slot, state, device_serial, reserved_at, bound_at)
VALUES (?, ?, ?, 0, ?, ?, ?, 0, ?)`
	// sqlSetIMEIState sets bound_at on the first move to BOUND, as binding does.
	sqlSetIMEIState = `UPDATE imeis SET state = ?, bound_at = COALESCE(bound_at, ?) WHERE imei14 = ?`
)

// SeedIMEI is one ledger IMEI to seed.
type SeedIMEI struct {
	SNR    uint32
	State  string // RESERVED, BOUND, VOIDED, REVOKED
	Device string // device serial ("" for RESERVED without device)
	Slot   int
}

// SeedLedger creates TAC tac (brand, model, model number M-1) with one pool
// over all its serials and the given rows, one reservation per device (rows
// without a device get one each), in one transaction. It emits no events.
func SeedLedger(ctx context.Context, db *store.DB, tac uint32, brand, model string, rows []SeedIMEI) error {
	return db.InTx(ctx, func(tx *store.Tx) error {
		if _, err := Exec(tx, sqlSeedTAC, tac, brand, model, "M-1"); err != nil {
			return fmt.Errorf("insert TAC: %w", err)
		}
		pool := fmt.Sprintf("pool-%d", tac)
		if _, err := Exec(tx, sqlSeedPool, pool, tac); err != nil {
			return fmt.Errorf("insert pool: %w", err)
		}
		var poolID int64
		if err := Get(tx, &poolID, sqlSeedPoolID, pool); err != nil {
			return err
		}
		resIDs := map[string]int64{}
		for _, r := range rows {
			req := fmt.Sprintf("req-%d-%d", tac, r.SNR)
			if r.Device != "" {
				req = fmt.Sprintf("req-%d-%s", tac, r.Device)
			}
			resID, ok := resIDs[req]
			if !ok {
				if _, err := Exec(tx, sqlSeedRes, req, []byte("h"), poolID, r.Device); err != nil {
					return fmt.Errorf("insert reservation: %w", err)
				}
				if err := Get(tx, &resID, sqlSeedResID, req); err != nil {
					return err
				}
				resIDs[req] = resID
			}
			var bound any
			if r.State != "RESERVED" && r.Device != "" {
				bound = int64(1)
			}
			if _, err := Exec(tx, sqlSeedIMEI, uint64(tac)*imei.SNRsPerTAC+uint64(r.SNR), poolID, resID, r.Slot, r.State, r.Device, bound); err != nil {
				return fmt.Errorf("insert IMEI: %w", err)
			}
		}
		return nil
	})
}

// SetIMEIState sets one IMEI's state in tx without the store's checks or
// events (the caller emits what it stands in for); moving to BOUND sets
// bound_at once.
func SetIMEIState(tx *store.Tx, imei14 uint64, state string) error {
	var bound any
	if state == string(store.StateBound) {
		bound = tx.Now().UnixMicro()
	}
	res, err := Exec(tx, sqlSetIMEIState, state, bound, imei14)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("%d rows updated (%v)", n, err)
	}
	return nil
}
