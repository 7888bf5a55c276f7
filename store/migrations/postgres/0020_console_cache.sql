-- The console overview's caches, kept in the ledger so that the first
-- overview after a start reads only the reservations made since any
-- replica's console last read, not the whole reservations table (each
-- station's last reservation) and the whole hour (the activity chart):
-- docs/benchmarks.md "Session 9 (branch consolefirst)". One row per cache,
-- written by package console at most once a minute while an overview is
-- open (never by provisioning); state is its JSON, read_at the time of the
-- read it describes (Unix microseconds on the ledger's clock). A row is a
-- cache: deleting it costs one full read at the next start.

-- +goose Up
CREATE TABLE console_cache (
    name    TEXT    PRIMARY KEY,
    read_at BIGINT  NOT NULL,
    state   BYTEA   NOT NULL
);

-- +goose Down
DROP TABLE console_cache;
