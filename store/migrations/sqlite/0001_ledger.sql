-- The allocation ledger (SQLite). Times are Unix microseconds, UTC.
-- An IMEI is stored as its 14-digit number TAC*1000000+SNR (the check digit
-- is derived), which makes it unique by construction of the primary key.

-- +goose Up
CREATE TABLE tacs (
    tac              INTEGER PRIMARY KEY CHECK (tac BETWEEN 0 AND 99999999),
    brand            TEXT    NOT NULL,
    model_name       TEXT    NOT NULL,
    model_number     TEXT    NOT NULL DEFAULT '',
    marketing_name   TEXT    NOT NULL DEFAULT '',
    device_type      TEXT    NOT NULL DEFAULT '',
    radio_interfaces TEXT    NOT NULL DEFAULT '',
    imeis_per_device INTEGER NOT NULL CHECK (imeis_per_device BETWEEN 1 AND 5),
    allocation_date  TEXT    NOT NULL,
    created_at       INTEGER NOT NULL
);

CREATE TABLE tac_approvals (
    tac         INTEGER NOT NULL REFERENCES tacs (tac),
    market      TEXT    NOT NULL,
    reference   TEXT    NOT NULL,
    valid_from  TEXT    NOT NULL,
    valid_until TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (tac, market, reference)
);

CREATE TABLE pools (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL UNIQUE,
    tac        INTEGER NOT NULL REFERENCES tacs (tac),
    snr_start  INTEGER NOT NULL,
    snr_end    INTEGER NOT NULL,
    -- high-water mark: every SNR in [snr_start, next_snr) has one imeis row
    next_snr   INTEGER NOT NULL,
    factory    TEXT    NOT NULL DEFAULT '',
    line       TEXT    NOT NULL DEFAULT '',
    product    TEXT    NOT NULL DEFAULT '',
    market     TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    CHECK (snr_start BETWEEN 0 AND 999999),
    CHECK (snr_end BETWEEN snr_start AND 999999),
    CHECK (next_snr BETWEEN snr_start AND snr_end + 1)
);
CREATE INDEX pools_tac ON pools (tac, snr_start);

-- +goose StatementBegin
CREATE TRIGGER pools_no_overlap_insert BEFORE INSERT ON pools
WHEN EXISTS (SELECT 1 FROM pools p WHERE p.tac = NEW.tac
             AND p.snr_start <= NEW.snr_end AND NEW.snr_start <= p.snr_end)
BEGIN
    SELECT RAISE(ABORT, 'pool_overlap: SNR range overlaps an existing pool of the same TAC');
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER pools_range_fixed BEFORE UPDATE OF tac, snr_start, snr_end ON pools
BEGIN
    SELECT RAISE(ABORT, 'pool_overlap: a pool''s TAC and SNR range never change');
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER pools_hwm_grows BEFORE UPDATE OF next_snr ON pools
WHEN NEW.next_snr < OLD.next_snr
BEGIN
    SELECT RAISE(ABORT, 'ledger_invariant: a pool''s high-water mark never goes down');
END;
-- +goose StatementEnd

CREATE TABLE reservations (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id    TEXT    NOT NULL UNIQUE,
    request_hash  BLOB    NOT NULL,
    pool_id       INTEGER NOT NULL REFERENCES pools (id),
    caller        TEXT    NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('provision', 'preallocate', 'bench')),
    device_serial TEXT    NOT NULL DEFAULT '',
    devices       INTEGER NOT NULL CHECK (devices >= 1),
    per_device    INTEGER NOT NULL CHECK (per_device BETWEEN 1 AND 5),
    -- the issuance intent, opaque to the store (JSON written by the provisioner)
    intent        BLOB,
    created_at    INTEGER NOT NULL
);

CREATE TABLE imeis (
    imei14         INTEGER PRIMARY KEY,
    pool_id        INTEGER NOT NULL REFERENCES pools (id),
    reservation_id INTEGER NOT NULL REFERENCES reservations (id),
    grp            INTEGER NOT NULL, -- device index inside the reservation
    slot           INTEGER NOT NULL, -- IMEI index inside the device (0..4)
    state          TEXT    NOT NULL CHECK (state IN ('RESERVED', 'BOUND', 'VOIDED', 'REVOKED')),
    device_serial  TEXT    NOT NULL DEFAULT '',
    cert_serial    TEXT    NOT NULL DEFAULT '',
    reason         TEXT    NOT NULL DEFAULT '',
    note           TEXT    NOT NULL DEFAULT '',
    reserved_at    INTEGER NOT NULL,
    bound_at       INTEGER,
    voided_at      INTEGER,
    revoked_at     INTEGER
);
CREATE INDEX imeis_pool ON imeis (pool_id, imei14);
CREATE INDEX imeis_reservation ON imeis (reservation_id, grp, slot);
CREATE INDEX imeis_device ON imeis (device_serial) WHERE device_serial <> '';
CREATE INDEX imeis_reserved ON imeis (reserved_at) WHERE state = 'RESERVED';

-- +goose StatementBegin
CREATE TRIGGER imeis_state_machine BEFORE UPDATE OF state ON imeis
WHEN NOT (OLD.state = NEW.state
       OR (OLD.state = 'RESERVED' AND NEW.state IN ('BOUND', 'VOIDED'))
       OR (OLD.state = 'BOUND' AND NEW.state IN ('REVOKED', 'VOIDED')))
BEGIN
    SELECT RAISE(ABORT, 'invalid_state: IMEI state transition not allowed');
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER imeis_never_deleted BEFORE DELETE ON imeis
BEGIN
    SELECT RAISE(ABORT, 'ledger_invariant: ledger rows are never deleted');
END;
-- +goose StatementEnd

-- +goose Down
DROP TABLE imeis;
DROP TABLE reservations;
DROP TABLE pools;
DROP TABLE tac_approvals;
DROP TABLE tacs;
