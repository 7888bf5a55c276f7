-- The national register outbox and export history (SQLite), owned by
-- package register. Times are Unix microseconds, UTC. An outbox row is
-- written in the same transaction as the ledger change it reports; rows are
-- never deleted (acknowledged and rejected rows are the delivery record).

-- +goose Up
CREATE TABLE register_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT    NOT NULL UNIQUE,
    imei14          INTEGER NOT NULL,
    tac             INTEGER NOT NULL,
    event           TEXT    NOT NULL CHECK (event IN ('registered', 'voided', 'revoked', 'updated')),
    device_id       TEXT    NOT NULL,
    model           TEXT    NOT NULL,
    brand           TEXT    NOT NULL,
    occurred_at     INTEGER NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sent', 'acknowledged', 'rejected')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    -- the claim of the worker delivering the row, valid until claim_until
    claimed_by      TEXT    NOT NULL DEFAULT '',
    claim_until     INTEGER NOT NULL DEFAULT 0,
    receipt_id      TEXT    NOT NULL DEFAULT '',
    reason          TEXT    NOT NULL DEFAULT '',
    clone_alert     INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT    NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER,
    done_at         INTEGER
);
CREATE INDEX register_outbox_open ON register_outbox (id) WHERE state IN ('pending', 'sent');
CREATE INDEX register_outbox_imei ON register_outbox (imei14, id);
CREATE INDEX register_outbox_acked ON register_outbox (done_at) WHERE state = 'acknowledged';
CREATE INDEX register_outbox_rejected ON register_outbox (done_at) WHERE state = 'rejected';

CREATE TABLE register_exports (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    kind              TEXT    NOT NULL CHECK (kind IN ('registration-list', 'registration-list-delta', 'drs')),
    created_at        INTEGER NOT NULL,
    -- every outbox row with id <= outbox_high_water is reflected in the export
    outbox_high_water INTEGER NOT NULL,
    since_export      INTEGER REFERENCES register_exports (id),
    rows              INTEGER NOT NULL,
    file              TEXT    NOT NULL
);

-- +goose Down
DROP TABLE register_exports;
DROP TABLE register_outbox;
