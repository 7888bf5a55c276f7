-- Provisioning: stations, CA issuers, issuance intents, devices, certificates
-- and device keys (postgres). Times are Unix microseconds, UTC.

-- +goose Up
CREATE TABLE stations (
    id          TEXT    PRIMARY KEY,
    factory     TEXT    NOT NULL,
    line        TEXT    NOT NULL,
    pools       TEXT    NOT NULL DEFAULT '', -- comma-separated pool names
    cert_serial TEXT    NOT NULL DEFAULT '',
    description TEXT    NOT NULL DEFAULT '',
    enrolled_at BIGINT NOT NULL,
    disabled_at BIGINT
);

-- CA keys live in the HSM; this table holds their certificates. kind is
-- device (issues device certificates), station (issues station client
-- certificates) or root. Exactly one issuer per kind is active.
CREATE TABLE issuers (
    key_id     TEXT    PRIMARY KEY, -- hex subjectKeyIdentifier
    label      TEXT    NOT NULL UNIQUE, -- HSM key label
    kind       TEXT    NOT NULL CHECK (kind IN ('device', 'station', 'root')),
    curve      TEXT    NOT NULL,
    cert_pem   TEXT    NOT NULL DEFAULT '',
    chain_pem  TEXT    NOT NULL DEFAULT '',
    active     BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX issuers_one_active ON issuers (kind) WHERE active;

-- An issuance intent is written before the HSM signs (boulder's order): the
-- certificate serial, notBefore, issuer and device public key fix the TBS
-- certificate, so a replay after a crash signs exactly the same TBS.
CREATE TABLE issuances (
    request_id     TEXT    PRIMARY KEY,
    kind           TEXT    NOT NULL CHECK (kind IN ('provision', 'bind', 'reissue')),
    request_hash   BYTEA   NOT NULL,
    station        TEXT    NOT NULL,
    device_serial  TEXT    NOT NULL,
    reservation_id BIGINT NOT NULL REFERENCES reservations (id),
    grp            INTEGER NOT NULL,
    cert_serial    TEXT    NOT NULL UNIQUE,
    not_before     BIGINT NOT NULL,
    issuer_key_id  TEXT    NOT NULL,
    public_key     BYTEA   NOT NULL, -- DER SubjectPublicKeyInfo of the device key
    spki_hash      BYTEA   NOT NULL,
    state          TEXT    NOT NULL CHECK (state IN ('pending', 'issued', 'abandoned')),
    created_at     BIGINT NOT NULL,
    completed_at   BIGINT
);
CREATE INDEX issuances_pending ON issuances (created_at) WHERE state = 'pending';

CREATE TABLE devices (
    serial         TEXT    PRIMARY KEY,
    station        TEXT    NOT NULL,
    reservation_id BIGINT NOT NULL REFERENCES reservations (id),
    grp            INTEGER NOT NULL,
    state          TEXT    NOT NULL CHECK (state IN ('BOUND', 'REVOKED', 'VOIDED')),
    cert_serial    TEXT    NOT NULL,
    bound_at       BIGINT NOT NULL,
    revoked_at     BIGINT,
    reason         TEXT    NOT NULL DEFAULT '',
    UNIQUE (reservation_id, grp)
);

CREATE TABLE certificates (
    serial        TEXT    PRIMARY KEY, -- lower-case hex
    device_serial TEXT    NOT NULL,
    request_id    TEXT    NOT NULL UNIQUE,
    issuer_key_id TEXT    NOT NULL,
    der           BYTEA   NOT NULL,
    tbs_hash      BYTEA   NOT NULL,
    spki_hash     BYTEA   NOT NULL,
    issued_at     BIGINT NOT NULL,
    revoked_at    BIGINT,
    revoke_reason TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX certificates_device ON certificates (device_serial);
CREATE INDEX certificates_revoked ON certificates (issuer_key_id, revoked_at) WHERE revoked_at IS NOT NULL;

-- A device public key certifies one device only: reuse is a cloning signal.
CREATE TABLE device_keys (
    spki_hash     BYTEA PRIMARY KEY,
    device_serial TEXT  NOT NULL
);

CREATE INDEX reservations_device ON reservations (device_serial) WHERE device_serial <> '';

-- +goose Down
DROP INDEX reservations_device;
DROP TABLE device_keys;
DROP TABLE certificates;
DROP TABLE devices;
DROP TABLE issuances;
DROP TABLE issuers;
DROP TABLE stations;
