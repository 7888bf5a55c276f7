-- Three changes that take dirty pages off every provisioned device (issue 14,
-- docs/benchmarks.md "Session 6 (branch sqlbytes2)"). SQLite only.
--
-- 1. imeis was keyed by the IMEI (imei14 INTEGER PRIMARY KEY: the rowid), so
-- a reservation inserted its rows at the tail of its pool's SNR range, one
-- place per pool in the middle of the table, and the bind rewrote them
-- longer (state, certificate serial, bound_at) in a later commit. In the
-- middle of a b-tree SQLite balances a full leaf with its siblings (all of
-- them rewritten, and left full, so the next insert splits again): about
-- 5.5 dirty 1 KiB pages per device per provisioning, the most of any
-- b-tree.
--
-- The table is now keyed by an implicit rowid, which appends: a commit's
-- rows, and their rewrite at bind a commit later, share the table's last
-- pages. The IMEI's uniqueness is the unique index imeis_imei14 (entries of
-- about 12 bytes: a pool's tail splits a leaf every few dozen IMEIs), and
-- every statement that names imei14 reads through it. The rows and what
-- every reader sees are unchanged. PostgreSQL's tables are heaps already
-- (a row appends, its primary key is an index): nothing changes there.
--
-- The table is rebuilt (SQLite cannot change a primary key): on a large
-- existing ledger this migration copies every IMEI row once.
--
-- 2. certificates_device (certificates by device serial) had no reader:
-- a device's certificate is read by serial (devices.cert_serial, the
-- primary key) or through its intent (sqlCertByRequest), never by device.
-- Its key has one insertion point per station: about two dirty pages per
-- device in every bind commit, for nothing. PostgreSQL keeps it (its bytes
-- are not counted there; a PostgreSQL migration can drop it alike).
--
-- 3. device_claims kept a claim for every device ever bound, keyed by the
-- serial (one insertion point per station, about two dirty pages per
-- device). On SQLite a claim now lives from the reserve (or bind intent)
-- until the device is recorded, when the devices row, keyed by the same
-- serial, takes it over; a serial with a devices row cannot be claimed
-- (store's claimsUntilBound). The claims of recorded devices go.

-- +goose Up
CREATE TABLE imeis_new (
    imei14         INTEGER NOT NULL CHECK (typeof(imei14) = 'integer'),
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
INSERT INTO imeis_new (imei14, pool_id, reservation_id, grp, slot, state, device_serial, cert_serial, reason, note,
    reserved_at, bound_at, voided_at, revoked_at)
    SELECT imei14, pool_id, reservation_id, grp, slot, state, device_serial, cert_serial, reason, note,
    reserved_at, bound_at, voided_at, revoked_at FROM imeis ORDER BY imei14;
DROP TABLE imeis;
ALTER TABLE imeis_new RENAME TO imeis;
CREATE UNIQUE INDEX imeis_imei14 ON imeis (imei14);
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

DROP INDEX certificates_device;

DELETE FROM device_claims WHERE serial IN (SELECT serial FROM devices);

-- +goose Down
-- As migration 0007 backfilled them: a recorded device's claim names no request.
INSERT OR IGNORE INTO device_claims (serial, request_id, claimed_at) SELECT serial, '', bound_at FROM devices;
CREATE INDEX certificates_device ON certificates (device_serial);
CREATE TABLE imeis_old (
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
INSERT INTO imeis_old (imei14, pool_id, reservation_id, grp, slot, state, device_serial, cert_serial, reason, note,
    reserved_at, bound_at, voided_at, revoked_at)
    SELECT imei14, pool_id, reservation_id, grp, slot, state, device_serial, cert_serial, reason, note,
    reserved_at, bound_at, voided_at, revoked_at FROM imeis ORDER BY imei14;
DROP TABLE imeis;
ALTER TABLE imeis_old RENAME TO imeis;
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
