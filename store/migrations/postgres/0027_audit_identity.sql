-- The audit leaves of the identity events (station.*, person.*, issuer.*),
-- indexed by leaf index alone: a partial index on the leaf's type, which
-- the version-1 encoding puts at bytes 6 on (1-based: a version byte, a
-- 4-byte length, the type; docs/audit-format.md). Restore and `tacline
-- ledger check` fold these events into the stations, people and issuers
-- they describe and compare them with those tables (audit.CheckIdentities),
-- which neither the ledger check nor the log's proofs covered: reading a
-- few leaves through this index instead of every leaf of the log. A
-- device's leaves do not match the predicate, so provisioning writes no
-- entry here. The predicate must stay identical to dialectSQL.identityLeaves.

-- +goose Up
CREATE INDEX audit_identity ON audit_leaves (idx)
    WHERE substr(data, 6, 7) IN ('\x73746174696f6e'::bytea, '\x706572736f6e2e'::bytea, '\x6973737565722e'::bytea);

-- +goose Down
DROP INDEX audit_identity;
