-- PKI hierarchy (PostgreSQL): two more issuer kinds. infra_root anchors
-- infrastructure identities (station CA, stations, roles, TLS server)
-- apart from the device root; ocsp rows are delegated OCSP responder
-- certificates of device issuers (their chain_pem), made and renewed by
-- the running server, never active.

-- +goose Up
ALTER TABLE issuers DROP CONSTRAINT issuers_kind_check;
ALTER TABLE issuers ADD CONSTRAINT issuers_kind_check CHECK (kind IN ('device', 'station', 'root', 'infra_root', 'ocsp'));

-- +goose Down
DELETE FROM issuers WHERE kind IN ('infra_root', 'ocsp');
ALTER TABLE issuers DROP CONSTRAINT issuers_kind_check;
ALTER TABLE issuers ADD CONSTRAINT issuers_kind_check CHECK (kind IN ('device', 'station', 'root'));
