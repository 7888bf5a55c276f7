-- The ledger's row guards decide in their triggers' WHEN clauses, and the
-- two partial indexes of the recovery sweeps are kept out of the bind's
-- plans (issue 14, docs/benchmarks.md "Session 6 (branch pgbatch)").
--
-- Guards: a PL/pgSQL call per updated row cost about as much as the row's
-- update itself; the WHEN clause is evaluated by the executor and calls
-- the function only for an update it refuses, which then raises (the
-- rules and the messages are those of 0001, each in one place: imeis'
-- allowed transitions in its WHEN clause, as SQLite's imeis_state_machine;
-- pools as SQLite's pools_range_fixed and pools_hwm_grows). Deleting a
-- ledger row is always refused.
--
-- Partial indexes: imeis_reserved (RESERVED IMEIs by reservation time) and
-- issuances_pending (pending intents by creation time) serve the recovery
-- sweeps. Their predicates matched the bind's own tests (state =
-- 'RESERVED', state = 'pending'), so PostgreSQL planned the bind on them:
-- a scan of every RESERVED IMEI (or pending intent) and of every dead index
-- entry left by earlier binds until the next VACUUM, instead of one
-- primary-key probe per row. Each predicate now also names a NOT NULL
-- column (always true): the sweeps' own tests (reserved_at < ?,
-- created_at < ?) imply it and still use the index, the bind's do not.

-- +goose Up
DROP TRIGGER imeis_guard ON imeis;
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION imeis_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'ledger_invariant: ledger rows are never deleted';
    END IF;
    RAISE EXCEPTION 'invalid_state: IMEI state transition % -> % not allowed', OLD.state, NEW.state;
END $$;
-- +goose StatementEnd
CREATE TRIGGER imeis_never_deleted BEFORE DELETE ON imeis FOR EACH ROW EXECUTE FUNCTION imeis_guard();
CREATE TRIGGER imeis_state_machine BEFORE UPDATE OF state ON imeis FOR EACH ROW
    WHEN (NOT (OLD.state = NEW.state
            OR (OLD.state = 'RESERVED' AND NEW.state IN ('BOUND', 'VOIDED'))
            OR (OLD.state = 'BOUND' AND NEW.state IN ('REVOKED', 'VOIDED'))))
    EXECUTE FUNCTION imeis_guard();

DROP TRIGGER pools_guard ON pools;
DROP FUNCTION pools_guard();
-- +goose StatementBegin
CREATE FUNCTION pools_range_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'pool_overlap: a pool''s TAC and SNR range never change';
END $$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE FUNCTION pools_hwm_grows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_invariant: a pool''s high-water mark never goes down';
END $$;
-- +goose StatementEnd
CREATE TRIGGER pools_range_fixed BEFORE UPDATE ON pools FOR EACH ROW
    WHEN (NEW.tac <> OLD.tac OR NEW.snr_start <> OLD.snr_start OR NEW.snr_end <> OLD.snr_end)
    EXECUTE FUNCTION pools_range_fixed();
CREATE TRIGGER pools_hwm_grows BEFORE UPDATE ON pools FOR EACH ROW
    WHEN (NEW.next_snr < OLD.next_snr)
    EXECUTE FUNCTION pools_hwm_grows();

DROP INDEX imeis_reserved;
CREATE INDEX imeis_reserved ON imeis (reserved_at) WHERE state = 'RESERVED' AND reserved_at IS NOT NULL;
DROP INDEX issuances_pending;
CREATE INDEX issuances_pending ON issuances (created_at) WHERE state = 'pending' AND created_at IS NOT NULL;

-- +goose Down
DROP INDEX issuances_pending;
CREATE INDEX issuances_pending ON issuances (created_at) WHERE state = 'pending';
DROP INDEX imeis_reserved;
CREATE INDEX imeis_reserved ON imeis (reserved_at) WHERE state = 'RESERVED';

DROP TRIGGER pools_hwm_grows ON pools;
DROP TRIGGER pools_range_fixed ON pools;
DROP FUNCTION pools_hwm_grows();
DROP FUNCTION pools_range_fixed();
-- +goose StatementBegin
CREATE FUNCTION pools_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.tac <> OLD.tac OR NEW.snr_start <> OLD.snr_start OR NEW.snr_end <> OLD.snr_end THEN
        RAISE EXCEPTION 'pool_overlap: a pool''s TAC and SNR range never change';
    END IF;
    IF NEW.next_snr < OLD.next_snr THEN
        RAISE EXCEPTION 'ledger_invariant: a pool''s high-water mark never goes down';
    END IF;
    RETURN NEW;
END $$;
-- +goose StatementEnd
CREATE TRIGGER pools_guard BEFORE UPDATE ON pools FOR EACH ROW EXECUTE FUNCTION pools_guard();

DROP TRIGGER imeis_state_machine ON imeis;
DROP TRIGGER imeis_never_deleted ON imeis;
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION imeis_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'ledger_invariant: ledger rows are never deleted';
    END IF;
    IF NOT (OLD.state = NEW.state
         OR (OLD.state = 'RESERVED' AND NEW.state IN ('BOUND', 'VOIDED'))
         OR (OLD.state = 'BOUND' AND NEW.state IN ('REVOKED', 'VOIDED'))) THEN
        RAISE EXCEPTION 'invalid_state: IMEI state transition % -> % not allowed', OLD.state, NEW.state;
    END IF;
    RETURN NEW;
END $$;
-- +goose StatementEnd
CREATE TRIGGER imeis_guard BEFORE UPDATE OR DELETE ON imeis FOR EACH ROW EXECUTE FUNCTION imeis_guard();
