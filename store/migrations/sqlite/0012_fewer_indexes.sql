-- Three secondary indexes that repeated a uniqueness or a lookup another
-- index already gives (issue 14, docs/benchmarks.md "Where the writes go").
-- Each was one more dirty index leaf per device in every group commit: its
-- key (a device serial or a request id) has one insertion point per
-- station, so a batch of devices from many stations dirtied one leaf per
-- device in each.
--
--   device_claims_request  a claim is released by its serial (the primary
--                          key), found through the intent's device serial;
--   reservations_device    "is this device provisioned" reads the IMEIs by
--                          device serial (imeis_device), which a
--                          provisioning reservation writes as well;
--   certificates.request_id UNIQUE
--                          an intent (issuances, keyed by request id) names
--                          exactly one certificate serial (UNIQUE), and a
--                          certificate is recorded only when its intent
--                          moves from pending to issued (once); the
--                          certificate of a request is read through its
--                          intent. SQLite cannot drop a column constraint:
--                          the table is rebuilt (nothing references it).

-- +goose Up
DROP INDEX device_claims_request;
DROP INDEX reservations_device;

CREATE TABLE certificates_new (
    serial        TEXT    PRIMARY KEY, -- lower-case hex
    device_serial TEXT    NOT NULL,
    request_id    TEXT    NOT NULL,
    issuer_key_id TEXT    NOT NULL,
    der           BLOB   NOT NULL,
    tbs_hash      BLOB   NOT NULL,
    spki_hash     BLOB   NOT NULL,
    issued_at     INTEGER NOT NULL,
    revoked_at    INTEGER,
    revoke_reason TEXT    NOT NULL DEFAULT ''
);
INSERT INTO certificates_new SELECT serial, device_serial, request_id, issuer_key_id, der, tbs_hash, spki_hash,
    issued_at, revoked_at, revoke_reason FROM certificates;
DROP TABLE certificates;
ALTER TABLE certificates_new RENAME TO certificates;
CREATE INDEX certificates_device ON certificates (device_serial);
CREATE INDEX certificates_revoked ON certificates (issuer_key_id, revoked_at) WHERE revoked_at IS NOT NULL;

-- +goose Down
CREATE TABLE certificates_old (
    serial        TEXT    PRIMARY KEY,
    device_serial TEXT    NOT NULL,
    request_id    TEXT    NOT NULL UNIQUE,
    issuer_key_id TEXT    NOT NULL,
    der           BLOB   NOT NULL,
    tbs_hash      BLOB   NOT NULL,
    spki_hash     BLOB   NOT NULL,
    issued_at     INTEGER NOT NULL,
    revoked_at    INTEGER,
    revoke_reason TEXT    NOT NULL DEFAULT ''
);
INSERT INTO certificates_old SELECT serial, device_serial, request_id, issuer_key_id, der, tbs_hash, spki_hash,
    issued_at, revoked_at, revoke_reason FROM certificates;
DROP TABLE certificates;
ALTER TABLE certificates_old RENAME TO certificates;
CREATE INDEX certificates_device ON certificates (device_serial);
CREATE INDEX certificates_revoked ON certificates (issuer_key_id, revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX reservations_device ON reservations (device_serial) WHERE device_serial <> '';
CREATE INDEX device_claims_request ON device_claims (request_id);
