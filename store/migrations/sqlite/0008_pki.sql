-- PKI hierarchy (SQLite): two more issuer kinds. infra_root anchors
-- infrastructure identities (station CA, stations, roles, TLS server)
-- apart from the device root; ocsp rows are delegated OCSP responder
-- certificates of device issuers (their chain_pem), made and renewed by
-- the running server, never active. revoked_at and revoke_reason record
-- the revocation of a CA (`tacline ca revoke`), listed on its root's CRL.
-- SQLite cannot alter a CHECK constraint: the table is rebuilt (nothing
-- references it).

-- +goose Up
CREATE TABLE issuers_new (
    key_id     TEXT    PRIMARY KEY, -- hex subjectKeyIdentifier
    label      TEXT    NOT NULL UNIQUE, -- HSM key label
    kind       TEXT    NOT NULL CHECK (kind IN ('device', 'station', 'root', 'infra_root', 'ocsp')),
    curve      TEXT    NOT NULL,
    cert_pem   TEXT    NOT NULL DEFAULT '',
    chain_pem  TEXT    NOT NULL DEFAULT '',
    active     INTEGER NOT NULL DEFAULT 0 CHECK (active IN (0, 1)),
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    revoke_reason TEXT NOT NULL DEFAULT '',
    CHECK (revoked_at IS NULL OR active = 0)
);
INSERT INTO issuers_new (key_id, label, kind, curve, cert_pem, chain_pem, active, created_at)
    SELECT key_id, label, kind, curve, cert_pem, chain_pem, active, created_at FROM issuers;
DROP TABLE issuers;
ALTER TABLE issuers_new RENAME TO issuers;
CREATE UNIQUE INDEX issuers_one_active ON issuers (kind) WHERE active = 1;

-- +goose Down
CREATE TABLE issuers_old (
    key_id     TEXT    PRIMARY KEY,
    label      TEXT    NOT NULL UNIQUE,
    kind       TEXT    NOT NULL CHECK (kind IN ('device', 'station', 'root')),
    curve      TEXT    NOT NULL,
    cert_pem   TEXT    NOT NULL DEFAULT '',
    chain_pem  TEXT    NOT NULL DEFAULT '',
    active     INTEGER NOT NULL DEFAULT 0 CHECK (active IN (0, 1)),
    created_at INTEGER NOT NULL
);
INSERT INTO issuers_old SELECT key_id, label, kind, curve, cert_pem, chain_pem, active, created_at FROM issuers
    WHERE kind IN ('device', 'station', 'root');
DROP TABLE issuers;
ALTER TABLE issuers_old RENAME TO issuers;
CREATE UNIQUE INDEX issuers_one_active ON issuers (kind) WHERE active = 1;
