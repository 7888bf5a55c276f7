-- audit_imeis is keyed by IMEI: every provisioning commit inserted its
-- devices' IMEI index rows at one place per pool (64 stations: about one
-- dirty leaf per device per commit, written whole into the WAL; 2.7-4.3
-- 1 KiB pages per device, docs/benchmarks.md, issue 14). The append now
-- writes them here, keyed by leaf index (it appends: the rows of a commit
-- share a page), and every 2,048 leaves (store.auditIMEIStage) the staged
-- rows move into audit_imeis in one sorted insert, in the transaction of
-- that append. Lookups by IMEI read both tables (the staged one holds at
-- most a few thousand rows). PostgreSQL has the table but writes
-- audit_imeis directly (store's dialect decides).

-- +goose Up
CREATE TABLE audit_imeis_staged (
    idx  INTEGER NOT NULL,
    imei TEXT    NOT NULL,
    PRIMARY KEY (idx, imei)
) WITHOUT ROWID;

-- +goose Down
INSERT INTO audit_imeis (imei, idx) SELECT imei, idx FROM audit_imeis_staged;
DROP TABLE audit_imeis_staged;
