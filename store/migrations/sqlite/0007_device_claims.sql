-- Device serial claims (sqlite). A provisioning reservation or a bind intent
-- claims its device serial in its own transaction: the primary key lets one
-- live claim per serial exist, so when the same serial arrives at two
-- replicas at once the loser's transaction fails whole (nothing reserved)
-- and it is told device_already_provisioned. A claim is released when its
-- intent is abandoned (the device may then be provisioned again); a bound
-- device keeps its claim. request_id is empty for claims backfilled from
-- devices bound before this migration.

-- +goose Up
CREATE TABLE device_claims (
    serial     TEXT   PRIMARY KEY,
    request_id TEXT   NOT NULL,
    claimed_at INTEGER NOT NULL
);
CREATE INDEX device_claims_request ON device_claims (request_id);
INSERT OR IGNORE INTO device_claims (serial, request_id, claimed_at)
    SELECT serial, '', bound_at FROM devices;
INSERT OR IGNORE INTO device_claims (serial, request_id, claimed_at)
    SELECT device_serial, request_id, created_at FROM issuances
    WHERE state = 'pending' AND kind IN ('provision', 'bind') ORDER BY created_at;

-- +goose Down
DROP TABLE device_claims;
