-- PKI hierarchy (PostgreSQL): two more issuer kinds. infra_root anchors
-- infrastructure identities (station CA, stations, roles, TLS server)
-- apart from the device root; ocsp rows are delegated OCSP responder
-- certificates of device issuers (their chain_pem), made and renewed by
-- the running server, never active. revoked_at and revoke_reason record
-- the revocation of a CA (`tacline ca revoke`), listed on its root's CRL.

-- +goose Up
ALTER TABLE issuers DROP CONSTRAINT issuers_kind_check;
ALTER TABLE issuers ADD CONSTRAINT issuers_kind_check CHECK (kind IN ('device', 'station', 'root', 'infra_root', 'ocsp'));
ALTER TABLE issuers ADD COLUMN revoked_at BIGINT;
ALTER TABLE issuers ADD COLUMN revoke_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE issuers ADD CONSTRAINT issuers_revoked_inactive CHECK (revoked_at IS NULL OR NOT active);

-- +goose Down
ALTER TABLE issuers DROP CONSTRAINT issuers_revoked_inactive;
ALTER TABLE issuers DROP COLUMN revoked_at;
ALTER TABLE issuers DROP COLUMN revoke_reason;
DELETE FROM issuers WHERE kind IN ('infra_root', 'ocsp');
ALTER TABLE issuers DROP CONSTRAINT issuers_kind_check;
ALTER TABLE issuers ADD CONSTRAINT issuers_kind_check CHECK (kind IN ('device', 'station', 'root'));
