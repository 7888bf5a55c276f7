-- The binding updates imeis and issuances in place (HOT) on PostgreSQL
-- (issue 14, docs/benchmarks.md "Session 21 (lead): the binding in
-- place").
--
-- PostgreSQL writes a new entry in every index of a row when an update
-- changes any column an index names, in its key or in its predicate; it
-- leaves the indexes alone (a heap-only tuple) when no such column changes
-- and the new version fits on the row's page. The binding moves an IMEI
-- from RESERVED to BOUND and an intent from pending to issued, and state
-- was named by the partial indexes imeis_reserved, imeis_retired and
-- issuances_pending: so each device wrote ten index entries at binding,
-- into indexes of one entry per IMEI or intent ever recorded (imeis_pkey,
-- imeis_pool, imeis_reservation, imeis_device for each of two IMEIs;
-- issuances_pkey and the certificate serial's), each a descent through a
-- b-tree that grows with the ledger.
--
-- Those three indexes served the readers of the few rows that are not in
-- their final state: the recovery sweeps (RESERVED IMEIs and pending
-- intents by age), the pool and lease counts (RESERVED, VOIDED and REVOKED
-- IMEIs by pool) and the concurrent-intent checks. Two small tables now
-- hold those rows, kept by statement triggers in the same transaction as
-- the change (one trigger call per statement, whatever its rows):
--
--   imeis_not_bound  every IMEI row whose state is not BOUND (RESERVED,
--                    VOIDED, REVOKED), with the columns its readers test;
--   intents_pending  every pending intent, with the columns its readers
--                    test (state is always 'pending': the readers' text is
--                    the same as SQLite's, which reads issuances).
--
-- Each side table has as few indexes as its writers need (each is written
-- per device): the primary key, which the triggers delete and upsert by,
-- and for the RESERVED IMEIs their reservation time (the recovery sweep,
-- which runs while the table also holds the VOIDED and REVOKED rows of
-- years). The other readers (pool and lease counts, the pending intents
-- of a device or group, the sweep of old intents) read the few rows in
-- flight or retired whole.
--
-- No index of imeis or issuances names state any more, and both tables
-- leave room on each page for the bound versions of its rows (fillfactor;
-- pages written before this migration are full, so their rows are updated
-- as before). A reservation batch fills a page with its rows and one
-- binding batch soon updates most of them, in one statement, before the
-- old versions can be pruned: so the page must hold both versions of its
-- rows. A bound IMEI row is about 1.4 times its reserved version (the
-- certificate serial and bound_at), an issued intent about as long as the
-- pending one: fillfactor 40 and 50 (measured: 100% of the bindings' row
-- updates in place, against 46% at 75 for both). The cost is space: the
-- rows of imeis and issuances take about twice the pages. `ledger check` proves that each side table holds exactly the
-- rows it mirrors (store/check.go). Provisioning sets an IMEI's device
-- serial at reservation, so its binding changes no indexed column; a
-- pre-allocated IMEI gets its serial at binding and is updated as before.

-- +goose Up
CREATE TABLE imeis_not_bound (
    imei14         BIGINT PRIMARY KEY,
    pool_id        BIGINT NOT NULL,
    reservation_id BIGINT NOT NULL,
    state          TEXT   NOT NULL CHECK (state IN ('RESERVED', 'VOIDED', 'REVOKED')),
    reserved_at    BIGINT NOT NULL
);
CREATE INDEX imeis_not_bound_reserved ON imeis_not_bound (reserved_at) WHERE state = 'RESERVED';
INSERT INTO imeis_not_bound (imei14, pool_id, reservation_id, state, reserved_at)
    SELECT imei14, pool_id, reservation_id, state, reserved_at FROM imeis WHERE state <> 'BOUND';

CREATE TABLE intents_pending (
    request_id     TEXT    PRIMARY KEY,
    kind           TEXT    NOT NULL,
    device_serial  TEXT    NOT NULL,
    reservation_id BIGINT  NOT NULL,
    grp            INTEGER NOT NULL,
    state          TEXT    NOT NULL CHECK (state = 'pending'),
    created_at     BIGINT  NOT NULL
);
INSERT INTO intents_pending (request_id, kind, device_serial, reservation_id, grp, state, created_at)
    SELECT request_id, kind, device_serial, reservation_id, grp, state, created_at FROM issuances WHERE state = 'pending';

-- +goose StatementBegin
CREATE FUNCTION imeis_not_bound_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO imeis_not_bound (imei14, pool_id, reservation_id, state, reserved_at)
        SELECT imei14, pool_id, reservation_id, state, reserved_at FROM new_rows WHERE state <> 'BOUND';
    RETURN NULL;
END $$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE FUNCTION imeis_not_bound_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- imei14 never changes (it is the row's identity; imeis_never_deleted
    -- and the state machine guard the rest), so old and new rows pair by it.
    DELETE FROM imeis_not_bound d USING old_rows o JOIN new_rows n ON n.imei14 = o.imei14
        WHERE d.imei14 = o.imei14 AND o.state <> 'BOUND' AND n.state = 'BOUND';
    INSERT INTO imeis_not_bound (imei14, pool_id, reservation_id, state, reserved_at)
        SELECT n.imei14, n.pool_id, n.reservation_id, n.state, n.reserved_at
        FROM old_rows o JOIN new_rows n ON n.imei14 = o.imei14
        WHERE n.state <> 'BOUND' AND n.state <> o.state
        ON CONFLICT (imei14) DO UPDATE SET state = excluded.state;
    RETURN NULL;
END $$;
-- +goose StatementEnd
CREATE TRIGGER imeis_not_bound_inserted AFTER INSERT ON imeis
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION imeis_not_bound_inserted();
CREATE TRIGGER imeis_not_bound_updated AFTER UPDATE ON imeis
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION imeis_not_bound_updated();

-- +goose StatementBegin
CREATE FUNCTION intents_pending_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO intents_pending (request_id, kind, device_serial, reservation_id, grp, state, created_at)
        SELECT request_id, kind, device_serial, reservation_id, grp, state, created_at FROM new_rows WHERE state = 'pending';
    RETURN NULL;
END $$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE FUNCTION intents_pending_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- An intent leaves pending once (issued or abandoned) and no statement
    -- changes its request id or the columns intents_pending copies.
    DELETE FROM intents_pending p USING new_rows n WHERE p.request_id = n.request_id AND n.state <> 'pending';
    RETURN NULL;
END $$;
-- +goose StatementEnd
CREATE TRIGGER intents_pending_inserted AFTER INSERT ON issuances
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION intents_pending_inserted();
CREATE TRIGGER intents_pending_updated AFTER UPDATE ON issuances
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION intents_pending_updated();

DROP INDEX imeis_reserved;
DROP INDEX imeis_retired;
DROP INDEX issuances_pending;
ALTER TABLE imeis SET (fillfactor = 40);
ALTER TABLE issuances SET (fillfactor = 50);

-- +goose Down
ALTER TABLE issuances RESET (fillfactor);
ALTER TABLE imeis RESET (fillfactor);
CREATE INDEX issuances_pending ON issuances (created_at) WHERE state = 'pending' AND created_at IS NOT NULL;
CREATE INDEX imeis_retired ON imeis (pool_id, state, imei14) WHERE state IN ('VOIDED', 'REVOKED');
CREATE INDEX imeis_reserved ON imeis (reserved_at) WHERE state = 'RESERVED' AND reserved_at IS NOT NULL;
DROP TRIGGER intents_pending_updated ON issuances;
DROP TRIGGER intents_pending_inserted ON issuances;
DROP FUNCTION intents_pending_updated();
DROP FUNCTION intents_pending_inserted();
DROP TRIGGER imeis_not_bound_updated ON imeis;
DROP TRIGGER imeis_not_bound_inserted ON imeis;
DROP FUNCTION imeis_not_bound_updated();
DROP FUNCTION imeis_not_bound_inserted();
DROP TABLE intents_pending;
DROP TABLE imeis_not_bound;
