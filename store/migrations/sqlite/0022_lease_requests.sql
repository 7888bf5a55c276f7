-- A site's lease request is idempotent (docs/sites.md, "Leases at
-- headquarters"): the site writes a request id to its own ledger before
-- it asks (lease_asks, one per HQ pool), sends it with the request, and
-- asks again with the same id until it has recorded the lease; HQ keeps
-- the id with the lease it granted and answers a request it has seen with
-- that lease instead of granting another. A grant whose answer was lost
-- (a cut connection, a timeout) no longer leaves a lease the site never
-- holds. A lease an operator granted (`tacline lease grant`) waits for
-- the site: its next request claims it (the request's id is written to
-- it) instead of a new block. HQ also keeps the site's last applied audit
-- leaf: an event at or below it is a leaf shipped again (under a new
-- sequence number) and its batch is refused.

-- +goose Up
-- HQ: the site's request id of a lease it asked for (NULL: granted by an
-- operator, or asked for without an id).
ALTER TABLE leases ADD COLUMN request_id TEXT;
CREATE UNIQUE INDEX leases_request ON leases (site, request_id) WHERE request_id IS NOT NULL;
-- HQ: 1 for a lease an operator granted, which the site's next request
-- claims while request_id is NULL (leases granted before this migration:
-- 0, their sites hold them already).
ALTER TABLE leases ADD COLUMN by_operator INTEGER NOT NULL DEFAULT 0;
-- HQ: the index of the last leaf of the site's audit log whose event HQ
-- applied (NULL: none since this migration).
ALTER TABLE sites ADD COLUMN applied_leaf INTEGER;

-- Site: the request it is asking HQ for, per HQ pool, until the lease is
-- recorded (RecordHeldLease deletes it in the same transaction).
CREATE TABLE lease_asks (
    hq_pool    TEXT    PRIMARY KEY,
    request_id TEXT    NOT NULL,
    asked_at   INTEGER NOT NULL
);

-- +goose Down
DROP TABLE lease_asks;
ALTER TABLE sites DROP COLUMN applied_leaf;
ALTER TABLE leases DROP COLUMN by_operator;
DROP INDEX leases_request;
ALTER TABLE leases DROP COLUMN request_id;
