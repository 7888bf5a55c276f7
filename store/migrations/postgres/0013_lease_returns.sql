-- Lease returns with proof (PostgreSQL; docs/sites.md, "Returns").
--
-- A site releases a lease in one transaction of its ledger: the lease's
-- pool is closed for allocation and an audited lease.released event
-- carries the first SNR it never reserved (the site hands SNRs out in
-- order). HQ applies that event from the site's verified log: the SNRs
-- below the mark it never heard of are voided, and the SNRs from the mark
-- to the lease's end go back to the pool: a later grant takes them before
-- it moves the pool's high-water mark. A lease returned without the
-- site's proof (a dead site) voids every unreported SNR, as before.

-- +goose Up
-- HQ: the operator asked the site to release the lease.
ALTER TABLE leases ADD COLUMN return_requested_at BIGINT;
-- HQ: the first SNR the site's log proved never reserved, handed back for
-- re-leasing; NULL when nothing was handed back.
ALTER TABLE leases ADD COLUMN released_from BIGINT;
-- HQ: the first handed-back SNR not yet leased again.
ALTER TABLE leases ADD COLUMN relet_next BIGINT;
-- HQ: the returned lease this lease was cut from (NULL: from the pool's
-- high-water mark).
ALTER TABLE leases ADD COLUMN relet_of BIGINT REFERENCES leases (id);

-- A re-lease may start where its parent started: the range index is no
-- longer unique (ledger check verifies that no SNR lies in two leases).
DROP INDEX leases_range;
CREATE INDEX leases_range ON leases (tac, snr_start);
CREATE INDEX leases_relet ON leases (pool_id, id) WHERE relet_next IS NOT NULL AND relet_next <= snr_end;

-- +goose StatementBegin
CREATE FUNCTION leases_release_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.relet_of IS DISTINCT FROM OLD.relet_of
       OR (OLD.returned_at IS NOT NULL AND NEW.returned_at IS DISTINCT FROM OLD.returned_at)
       OR (OLD.released_from IS NOT NULL AND NEW.released_from IS DISTINCT FROM OLD.released_from)
       OR (NEW.released_from IS NOT NULL AND (NEW.returned_at IS NULL OR NEW.released_from NOT BETWEEN NEW.snr_start AND NEW.snr_end))
       OR (NEW.relet_next IS NOT NULL AND (NEW.released_from IS NULL OR NEW.relet_next < NEW.released_from OR NEW.relet_next > NEW.snr_end + 1))
       OR (OLD.relet_next IS NOT NULL AND (NEW.relet_next IS NULL OR NEW.relet_next < OLD.relet_next)) THEN
        RAISE EXCEPTION 'ledger_invariant: a lease is returned once, its handed-back SNRs are fixed, and re-leasing only moves forward';
    END IF;
    RETURN NEW;
END $$;
-- +goose StatementEnd
CREATE TRIGGER leases_release_fixed BEFORE UPDATE ON leases FOR EACH ROW EXECUTE FUNCTION leases_release_fixed();

-- A site: when the lease's pool was closed for allocation (renamed
-- <pool>.released), its high-water mark then, and when lease.released was
-- written.
ALTER TABLE held_leases ADD COLUMN closed_at BIGINT;
ALTER TABLE held_leases ADD COLUMN unused_from BIGINT;
ALTER TABLE held_leases ADD COLUMN released_at BIGINT;
ALTER TABLE held_leases ADD COLUMN release_reason TEXT NOT NULL DEFAULT '';

-- +goose StatementBegin
CREATE FUNCTION held_leases_release_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (OLD.closed_at IS NOT NULL AND (NEW.closed_at IS DISTINCT FROM OLD.closed_at OR NEW.unused_from IS DISTINCT FROM OLD.unused_from))
       OR (OLD.released_at IS NOT NULL AND NEW.released_at IS DISTINCT FROM OLD.released_at)
       OR (NEW.released_at IS NOT NULL AND NEW.closed_at IS NULL) THEN
        RAISE EXCEPTION 'ledger_invariant: a held lease is closed and released once';
    END IF;
    RETURN NEW;
END $$;
-- +goose StatementEnd
CREATE TRIGGER held_leases_release_once BEFORE UPDATE ON held_leases FOR EACH ROW EXECUTE FUNCTION held_leases_release_once();

-- +goose Down
DROP TRIGGER held_leases_release_once ON held_leases;
DROP FUNCTION held_leases_release_once();
ALTER TABLE held_leases DROP COLUMN release_reason;
ALTER TABLE held_leases DROP COLUMN released_at;
ALTER TABLE held_leases DROP COLUMN unused_from;
ALTER TABLE held_leases DROP COLUMN closed_at;
DROP TRIGGER leases_release_fixed ON leases;
DROP FUNCTION leases_release_fixed();
DROP INDEX leases_relet;
DROP INDEX leases_range;
CREATE UNIQUE INDEX leases_range ON leases (tac, snr_start);
ALTER TABLE leases DROP COLUMN relet_of;
ALTER TABLE leases DROP COLUMN relet_next;
ALTER TABLE leases DROP COLUMN released_from;
ALTER TABLE leases DROP COLUMN return_requested_at;
