-- imeis_pool (pool_id, imei14) served only the ledger check, which now
-- walks each pool's allocated range on the primary key (imei14) instead.
-- Every reservation wrote one more index leaf per pool in every batch for
-- it: about 4 % of the WAL pages a device costs on SQLite (issue 14,
-- docs/benchmarks.md).

-- +goose Up
DROP INDEX imeis_pool;

-- +goose Down
CREATE INDEX imeis_pool ON imeis (pool_id, imei14);
