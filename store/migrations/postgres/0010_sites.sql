-- Sites and leases (PostgreSQL): headquarters leases blocks of SNRs from its
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
    enrolled_at   BIGINT  NOT NULL,
    applied_seq   BIGINT  NOT NULL DEFAULT 0 CHECK (applied_seq >= 0),
    cp_size       BIGINT  NOT NULL DEFAULT 0 CHECK (cp_size >= 0),
    cp_hash       BYTEA,
    cp_note       TEXT    NOT NULL DEFAULT '',
    cp_cosigned   TEXT    NOT NULL DEFAULT '',
    last_sync_at  BIGINT,
    refusals      BIGINT  NOT NULL DEFAULT 0,
    last_refusal  TEXT    NOT NULL DEFAULT ''
);

-- +goose StatementBegin
CREATE FUNCTION sites_seq_grows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.applied_seq < OLD.applied_seq OR NEW.cp_size < OLD.cp_size THEN
        RAISE EXCEPTION 'ledger_invariant: a site''s applied sequence and checkpoint size never go down';
    END IF;
    RETURN NEW;
END $$;
-- +goose StatementEnd
CREATE TRIGGER sites_seq_grows BEFORE UPDATE ON sites FOR EACH ROW EXECUTE FUNCTION sites_seq_grows();

CREATE TABLE leases (
    id          BIGSERIAL PRIMARY KEY,
    site        TEXT    NOT NULL REFERENCES sites (name),
    pool_id     BIGINT  NOT NULL REFERENCES pools (id),
    tac         BIGINT  NOT NULL,
    snr_start   BIGINT  NOT NULL CHECK (snr_start BETWEEN 0 AND 999999),
    snr_end     BIGINT  NOT NULL CHECK (snr_end BETWEEN snr_start AND 999999),
    granted_at  BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL,
    returned_at BIGINT
);
CREATE INDEX leases_site ON leases (site, id);
CREATE UNIQUE INDEX leases_range ON leases (tac, snr_start);

-- +goose StatementBegin
CREATE FUNCTION leases_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'ledger_invariant: leases are never deleted';
    END IF;
    IF NEW.site <> OLD.site OR NEW.pool_id <> OLD.pool_id OR NEW.tac <> OLD.tac
       OR NEW.snr_start <> OLD.snr_start OR NEW.snr_end <> OLD.snr_end THEN
        RAISE EXCEPTION 'ledger_invariant: a lease''s site and SNR range never change';
    END IF;
    RETURN NEW;
END $$;
-- +goose StatementEnd
CREATE TRIGGER leases_fixed BEFORE UPDATE OR DELETE ON leases FOR EACH ROW EXECUTE FUNCTION leases_fixed();

-- A site's side (docs/sites.md). held_leases: the leases HQ granted this
-- site; each is a pool of this ledger (named <HQ pool>.lease<id>) whose
-- range is the lease's, so the allocator hands its SNRs out in order.
CREATE TABLE held_leases (
    lease_id   BIGINT  PRIMARY KEY, -- HQ's lease id
    pool_id    BIGINT  NOT NULL UNIQUE REFERENCES pools (id),
    hq_pool    TEXT    NOT NULL,   -- the HQ pool stations name
    -- the HQ pool's range: stations check their IMEIs lie in it
    hq_snr_start BIGINT NOT NULL,
    hq_snr_end   BIGINT NOT NULL,
    expires_at BIGINT  NOT NULL,
    granted_at BIGINT  NOT NULL
);
CREATE INDEX held_leases_pool ON held_leases (hq_pool, lease_id);

-- The site's sync outbox: every ledger event that changes an IMEI's fate,
-- written in the transaction of the change, shipped to HQ in id order.
CREATE TABLE site_outbox (
    id      BIGSERIAL PRIMARY KEY,
    event   TEXT    NOT NULL, -- the event as JSON (api/wire SiteEvent without seq)
    shipped BIGINT  -- when HQ acknowledged it; NULL while pending
);
CREATE INDEX site_outbox_pending ON site_outbox (id) WHERE shipped IS NULL;

-- +goose Down
DROP TABLE site_outbox;
DROP TABLE held_leases;
DROP TABLE leases;
DROP FUNCTION leases_fixed();
DROP TABLE sites;
DROP FUNCTION sites_seq_grows();
