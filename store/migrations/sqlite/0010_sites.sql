-- Sites and leases (SQLite): headquarters leases blocks of SNRs from its
-- pools to factory sites (docs/sites.md). Times are Unix microseconds, UTC.
--
-- A lease takes its block from the pool's high-water mark (pools.next_snr
-- grows by the block's size when the lease is granted), so HQ's own
-- allocator never hands its SNRs out. An SNR of a lease has no imeis row
-- until the site's ledger events arrive (bound, voided, revoked), or until
-- the lease is returned and its unused SNRs are voided: `ledger check`
-- counts it as leased and not yet used.

-- +goose Up
CREATE TABLE sites (
    name          TEXT    PRIMARY KEY,
    description   TEXT    NOT NULL DEFAULT '',
    cert_serial   TEXT    NOT NULL DEFAULT '',
    -- the C2SP signed-note verifier key of the site's audit checkpoints
    verifier      TEXT    NOT NULL DEFAULT '',
    -- the HQ pools the site may lease from (comma-separated)
    pools         TEXT    NOT NULL DEFAULT '',
    enrolled_at   INTEGER NOT NULL,
    -- exactly-once sync: the sequence number of the last site event applied
    applied_seq   INTEGER NOT NULL DEFAULT 0 CHECK (applied_seq >= 0),
    -- the last site audit checkpoint HQ verified (and cosigned)
    cp_size       INTEGER NOT NULL DEFAULT 0 CHECK (cp_size >= 0),
    cp_hash       BLOB,
    cp_note       TEXT    NOT NULL DEFAULT '',
    cp_cosigned   TEXT    NOT NULL DEFAULT '',
    last_sync_at  INTEGER,
    -- the last refused batch (a consistency or lease violation), kept for status
    refusals      INTEGER NOT NULL DEFAULT 0,
    last_refusal  TEXT    NOT NULL DEFAULT ''
);

-- +goose StatementBegin
CREATE TRIGGER sites_seq_grows BEFORE UPDATE OF applied_seq, cp_size ON sites
WHEN NEW.applied_seq < OLD.applied_seq OR NEW.cp_size < OLD.cp_size
BEGIN
    SELECT RAISE(ABORT, 'ledger_invariant: a site''s applied sequence and checkpoint size never go down');
END;
-- +goose StatementEnd

CREATE TABLE leases (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    site        TEXT    NOT NULL REFERENCES sites (name),
    pool_id     INTEGER NOT NULL REFERENCES pools (id),
    tac         INTEGER NOT NULL,
    snr_start   INTEGER NOT NULL CHECK (snr_start BETWEEN 0 AND 999999),
    snr_end     INTEGER NOT NULL CHECK (snr_end BETWEEN snr_start AND 999999),
    granted_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    returned_at INTEGER
);
CREATE INDEX leases_site ON leases (site, id);
CREATE UNIQUE INDEX leases_range ON leases (tac, snr_start);

-- +goose StatementBegin
CREATE TRIGGER leases_range_fixed BEFORE UPDATE OF site, pool_id, tac, snr_start, snr_end ON leases
BEGIN
    SELECT RAISE(ABORT, 'ledger_invariant: a lease''s site and SNR range never change');
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER leases_never_deleted BEFORE DELETE ON leases
BEGIN
    SELECT RAISE(ABORT, 'ledger_invariant: leases are never deleted');
END;
-- +goose StatementEnd

-- A site's side (docs/sites.md). held_leases: the leases HQ granted this
-- site; each is a pool of this ledger (named <HQ pool>.lease<id>) whose
-- range is the lease's, so the allocator hands its SNRs out in order.
CREATE TABLE held_leases (
    lease_id   INTEGER  PRIMARY KEY, -- HQ's lease id
    pool_id    INTEGER  NOT NULL UNIQUE REFERENCES pools (id),
    hq_pool    TEXT    NOT NULL,   -- the HQ pool stations name
    -- the HQ pool's range: stations check their IMEIs lie in it
    hq_snr_start INTEGER NOT NULL,
    hq_snr_end   INTEGER NOT NULL,
    expires_at INTEGER  NOT NULL,
    granted_at INTEGER  NOT NULL
);
CREATE INDEX held_leases_pool ON held_leases (hq_pool, lease_id);

-- The site's sync outbox: every ledger event that changes an IMEI's fate,
-- written in the transaction of the change, shipped to HQ in id order.
CREATE TABLE site_outbox (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    event   TEXT    NOT NULL, -- the event as JSON (api/wire SiteEvent without seq)
    shipped INTEGER  -- when HQ acknowledged it; NULL while pending
);
CREATE INDEX site_outbox_pending ON site_outbox (id) WHERE shipped IS NULL;

-- +goose Down
DROP TABLE site_outbox;
DROP TABLE held_leases;
DROP TABLE leases;
DROP TABLE sites;
