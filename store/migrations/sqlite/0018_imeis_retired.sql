-- Pool usage counts without reading the ledger (issue 14, "cost that stays
-- flat as the ledger grows"; docs/benchmarks.md "Session 7 (branch
-- flatcounts)"). `tacline pool list`, GET /v1/pools and the console's
-- overview counted every IMEI row by pool and state. They now derive the
-- counts (store/counts.go): the rows of a pool are its high-water mark
-- minus its start (less the leased SNRs not yet reported), RESERVED rows
-- come from imeis_reserved (the requests in flight and pre-allocations),
-- VOIDED and REVOKED rows from this index, and BOUND is the rest. A
-- lease's counts (`tacline site status`, a site's status at HQ) read this
-- index over the lease's IMEIs instead of the lease's rows.
--
-- Provisioning never writes this index: it moves rows from RESERVED to
-- BOUND, neither of which is in it. Only voids, revocations and recovery's
-- abandonments add an entry. Creating it reads the imeis table once.

-- +goose Up
CREATE INDEX imeis_retired ON imeis (pool_id, state, imei14) WHERE state IN ('VOIDED', 'REVOKED');

-- +goose Down
DROP INDEX imeis_retired;
