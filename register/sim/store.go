package sim

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"time"

	_ "github.com/mattn/go-sqlite3" // the "sqlite3" driver

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/internal/sqlitefile"
	"github.com/tacline/tacline/register/wire"
)

// The simulator's schema: its own SQLite file, not the ledger.
const schema = `
CREATE TABLE IF NOT EXISTS requests (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at INTEGER NOT NULL,
    items       INTEGER NOT NULL,
    outcome     TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS received (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id      INTEGER NOT NULL,
    idempotency_key TEXT    NOT NULL,
    imei            TEXT    NOT NULL,
    event           TEXT    NOT NULL,
    status          TEXT    NOT NULL
);
CREATE TABLE IF NOT EXISTS applied (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT    NOT NULL UNIQUE,
    imei14          INTEGER NOT NULL,
    event           TEXT    NOT NULL,
    device_id       TEXT    NOT NULL,
    applied_at      INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS holdings (
    imei14     INTEGER PRIMARY KEY,
    tac        TEXT    NOT NULL,
    device_id  TEXT    NOT NULL,
    brand      TEXT    NOT NULL,
    model      TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);`

const (
	sqlInsertRequest  = `INSERT INTO requests (received_at, items, outcome) VALUES (?, ?, ?)`
	sqlSetOutcome     = `UPDATE requests SET outcome = ? WHERE id = ?`
	sqlInsertReceived = `INSERT INTO received (request_id, idempotency_key, imei, event, status) VALUES (?, ?, ?, ?, ?)`
	sqlAppliedByKey   = `SELECT seq FROM applied WHERE idempotency_key = ?`
	sqlInsertApplied  = `INSERT INTO applied (idempotency_key, imei14, event, device_id, applied_at) VALUES (?, ?, ?, ?, ?)`
	sqlHolding        = `SELECT device_id, brand, status FROM holdings WHERE imei14 = ?`
	sqlUpsertHolding  = `INSERT INTO holdings (imei14, tac, device_id, brand, model, status, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (imei14) DO UPDATE SET status = excluded.status, model = excluded.model, updated_at = excluded.updated_at`
	sqlStatsRequests = `SELECT outcome, COUNT(*) FROM requests GROUP BY outcome`
	sqlStatsReceived = `SELECT status, COUNT(*) FROM received GROUP BY status`
	sqlStatsApplied  = `SELECT COUNT(*) FROM applied`
	sqlAppliedList   = `SELECT seq, idempotency_key, imei14, event, device_id FROM applied ORDER BY seq`
	sqlHoldingsList  = `SELECT imei14, device_id, brand, model, status FROM holdings ORDER BY imei14`
)

// openDB opens (creating if needed) the simulator's SQLite file.
func openDB(path string) (*sql.DB, error) {
	db, err := sql.Open("sqlite3", sqlitefile.URI(path, "_busy_timeout=10000&_journal_mode=WAL&_synchronous=FULL&_txlock=immediate"))
	if err != nil {
		return nil, fmt.Errorf("open simulator database %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("create simulator schema in %s (check the directory exists and is writable): %w", path, err)
	}
	return db, nil
}

// recordRequest notes one POST as received, before anything else happens.
func recordRequest(ctx context.Context, db *sql.DB, items int, outcome string) (int64, error) {
	res, err := db.ExecContext(ctx, sqlInsertRequest, time.Now().UnixMicro(), items, outcome)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

// apply processes one batch in one transaction and returns its results.
func apply(ctx context.Context, db *sql.DB, reqID int64, req wire.Request) ([]wire.Result, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	now := time.Now().UnixMicro()
	results := make([]wire.Result, len(req.Items))
	for i, it := range req.Items {
		r, err := applyItem(ctx, tx, it, now)
		if err != nil {
			return nil, err
		}
		results[i] = r
		if _, err := tx.ExecContext(ctx, sqlInsertReceived, reqID, it.IdempotencyKey, it.IMEI, it.Event, r.Status); err != nil {
			return nil, err
		}
	}
	if _, err := tx.ExecContext(ctx, sqlSetOutcome, "answered", reqID); err != nil {
		return nil, err
	}
	return results, tx.Commit()
}

func receipt(seq int64) string { return "R" + strconv.FormatInt(seq, 10) }

func applyItem(ctx context.Context, tx *sql.Tx, it wire.Item, now int64) (wire.Result, error) {
	res := wire.Result{IdempotencyKey: it.IdempotencyKey}
	if reason := it.Validate(); reason != "" {
		res.Status, res.Reason = wire.StatusInvalid, reason
		return res, nil
	}
	var seq int64
	switch err := tx.QueryRowContext(ctx, sqlAppliedByKey, it.IdempotencyKey).Scan(&seq); err {
	case nil:
		res.Status, res.ReceiptID = wire.StatusDuplicate, receipt(seq)
		return res, nil
	case sql.ErrNoRows:
	default:
		return res, err
	}
	m, _ := imei.Parse(it.IMEI) // Validate checked it
	var device, brand, status string
	err := tx.QueryRowContext(ctx, sqlHolding, m.Uint64()).Scan(&device, &brand, &status)
	switch {
	case err == sql.ErrNoRows:
	case err != nil:
		return res, err
	case device != it.DeviceID || brand != it.Brand:
		res.Status = wire.StatusConflict
		res.Reason = fmt.Sprintf("IMEI %s is held by another device or manufacturer (status there: %s)", it.IMEI, status)
		return res, nil
	case status != wire.EventRegistered && it.Event != wire.EventVoided && it.Event != wire.EventRevoked:
		res.Status = wire.StatusInvalid
		res.Reason = fmt.Sprintf("IMEI %s is %s; it cannot be %s again", it.IMEI, status, it.Event)
		return res, nil
	}
	newStatus := it.Event
	if it.Event == wire.EventUpdated {
		newStatus = wire.EventRegistered
	}
	if _, err := tx.ExecContext(ctx, sqlUpsertHolding, m.Uint64(), it.TAC, it.DeviceID, it.Brand, it.Model, newStatus, now); err != nil {
		return res, err
	}
	r, err := tx.ExecContext(ctx, sqlInsertApplied, it.IdempotencyKey, m.Uint64(), it.Event, it.DeviceID, now)
	if err != nil {
		return res, err
	}
	seq, err = r.LastInsertId()
	if err != nil {
		return res, err
	}
	res.Status, res.ReceiptID = wire.StatusAccepted, receipt(seq)
	return res, nil
}

// Stats are the simulator's counters since its database was created.
type Stats struct {
	// Requests counts POSTs received, by outcome: answered, failed
	// (injected 503), dropped (applied, connection closed without answer),
	// garbage (applied, answered 200 with a body that is not JSON),
	// bad_request.
	Requests map[string]int64 `json:"requests"`
	// Items counts items received, by result status (accepted, duplicate,
	// conflict, invalid); duplicates delivered show up here.
	Items map[string]int64 `json:"items"`
	// Applied counts distinct events applied (accepted once each).
	Applied int64 `json:"applied"`
}

func stats(ctx context.Context, db *sql.DB) (Stats, error) {
	s := Stats{Requests: map[string]int64{}, Items: map[string]int64{}}
	for _, q := range []struct {
		sql string
		m   map[string]int64
	}{{sqlStatsRequests, s.Requests}, {sqlStatsReceived, s.Items}} {
		rows, err := db.QueryContext(ctx, q.sql)
		if err != nil {
			return s, err
		}
		for rows.Next() {
			var k string
			var n int64
			if err := rows.Scan(&k, &n); err != nil {
				rows.Close()
				return s, err
			}
			q.m[k] = n
		}
		if err := rows.Close(); err != nil {
			return s, err
		}
	}
	err := db.QueryRowContext(ctx, sqlStatsApplied).Scan(&s.Applied)
	return s, err
}

// Applied is one applied event, in the order the simulator applied it.
type Applied struct {
	Seq            int64  `json:"seq"`
	IdempotencyKey string `json:"idempotency_key"`
	IMEI14         string `json:"imei14"`
	Event          string `json:"event"`
	DeviceID       string `json:"device_id"`
}

func appliedList(ctx context.Context, db *sql.DB, fn func(Applied) error) error {
	rows, err := db.QueryContext(ctx, sqlAppliedList)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var a Applied
		var n uint64
		if err := rows.Scan(&a.Seq, &a.IdempotencyKey, &n, &a.Event, &a.DeviceID); err != nil {
			return err
		}
		m, err := imei.FromUint64(n)
		if err != nil {
			return err
		}
		a.IMEI14 = m.Digits14()
		if err := fn(a); err != nil {
			return err
		}
	}
	return rows.Err()
}
