-- A site's lease request is idempotent (docs/sites.md, "Leases at
-- headquarters"): the site writes a request id to its own ledger before
-- it asks (lease_asks, one per HQ pool), sends it with the request, and
-- asks again with the same id until it has recorded the lease; HQ keeps
-- the id with the lease it granted and answers a request it has seen with
-- that lease instead of granting another. A grant whose answer was lost
-- (a cut connection, a timeout) no longer leaves a lease the site never
-- holds.

-- +goose Up
-- HQ: the site's request id of a lease it asked for (NULL: granted by an
-- operator, or asked for without an id).
ALTER TABLE leases ADD COLUMN request_id TEXT;
CREATE UNIQUE INDEX leases_request ON leases (site, request_id) WHERE request_id IS NOT NULL;

-- Site: the request it is asking HQ for, per HQ pool, until the lease is
-- recorded (RecordHeldLease deletes it in the same transaction).
CREATE TABLE lease_asks (
    hq_pool    TEXT    PRIMARY KEY,
    request_id TEXT    NOT NULL,
    asked_at   INTEGER NOT NULL
);

-- +goose Down
DROP TABLE lease_asks;
DROP INDEX leases_request;
ALTER TABLE leases DROP COLUMN request_id;
