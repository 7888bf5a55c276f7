-- Lease returns with proof (SQLite; docs/sites.md, "Returns").
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
-- HQ: the operator asked the site to release the lease (it sees it at its
-- next status read and releases).
ALTER TABLE leases ADD COLUMN return_requested_at INTEGER;
-- HQ: the first SNR the site's log proved never reserved, handed back for
-- re-leasing; NULL when nothing was handed back (held, used up, or
-- returned without proof).
ALTER TABLE leases ADD COLUMN released_from INTEGER;
-- HQ: the first handed-back SNR not yet leased again (grows from
-- released_from to snr_end + 1).
ALTER TABLE leases ADD COLUMN relet_next INTEGER;
-- HQ: the returned lease this lease was cut from (NULL: from the pool's
-- high-water mark).
ALTER TABLE leases ADD COLUMN relet_of INTEGER REFERENCES leases (id);

-- A re-lease may start where the lease it was cut from started (a lease
-- the site never used): the range index is no longer unique. No SNR lies
-- in two leases: a re-lease lies in its parent's handed-back part, which
-- the parent no longer covers (ledger check verifies it).
DROP INDEX leases_range;
CREATE INDEX leases_range ON leases (tac, snr_start);
CREATE INDEX leases_relet ON leases (pool_id, id) WHERE relet_next IS NOT NULL AND relet_next <= snr_end;

-- +goose StatementBegin
CREATE TRIGGER leases_release_fixed BEFORE UPDATE OF released_from, relet_next, relet_of, returned_at ON leases
WHEN NEW.relet_of IS NOT OLD.relet_of
  OR (OLD.returned_at IS NOT NULL AND NEW.returned_at IS NOT OLD.returned_at)
  OR (OLD.released_from IS NOT NULL AND NEW.released_from IS NOT OLD.released_from)
  OR (NEW.released_from IS NOT NULL AND (NEW.returned_at IS NULL OR NEW.released_from NOT BETWEEN NEW.snr_start AND NEW.snr_end))
  OR (NEW.relet_next IS NOT NULL AND (NEW.released_from IS NULL OR NEW.relet_next < NEW.released_from OR NEW.relet_next > NEW.snr_end + 1))
  OR (OLD.relet_next IS NOT NULL AND (NEW.relet_next IS NULL OR NEW.relet_next < OLD.relet_next))
BEGIN
    SELECT RAISE(ABORT, 'ledger_invariant: a lease is returned once, its handed-back SNRs are fixed, and re-leasing only moves forward');
END;
-- +goose StatementEnd

-- A site: closed_at is when the lease's pool was closed for allocation
-- (renamed <pool>.released: the allocator no longer finds it), unused_from
-- its high-water mark then; released_at is when lease.released was
-- written (once no reservation of the lease was in flight).
ALTER TABLE held_leases ADD COLUMN closed_at INTEGER;
ALTER TABLE held_leases ADD COLUMN unused_from INTEGER;
ALTER TABLE held_leases ADD COLUMN released_at INTEGER;
ALTER TABLE held_leases ADD COLUMN release_reason TEXT NOT NULL DEFAULT '';

-- +goose StatementBegin
CREATE TRIGGER held_leases_release_once BEFORE UPDATE OF closed_at, unused_from, released_at ON held_leases
WHEN (OLD.closed_at IS NOT NULL AND (NEW.closed_at IS NOT OLD.closed_at OR NEW.unused_from IS NOT OLD.unused_from))
  OR (OLD.released_at IS NOT NULL AND NEW.released_at IS NOT OLD.released_at)
  OR (NEW.released_at IS NOT NULL AND NEW.closed_at IS NULL)
BEGIN
    SELECT RAISE(ABORT, 'ledger_invariant: a held lease is closed and released once');
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER held_leases_release_once;
ALTER TABLE held_leases DROP COLUMN release_reason;
ALTER TABLE held_leases DROP COLUMN released_at;
ALTER TABLE held_leases DROP COLUMN unused_from;
ALTER TABLE held_leases DROP COLUMN closed_at;
DROP TRIGGER leases_release_fixed;
DROP INDEX leases_relet;
DROP INDEX leases_range;
CREATE UNIQUE INDEX leases_range ON leases (tac, snr_start);
ALTER TABLE leases DROP COLUMN relet_of;
ALTER TABLE leases DROP COLUMN relet_next;
ALTER TABLE leases DROP COLUMN released_from;
ALTER TABLE leases DROP COLUMN return_requested_at;
