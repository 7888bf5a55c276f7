-- The staging table of the audit log's IMEI index (see the SQLite
-- migration 0014): on SQLite the append writes a leaf's IMEI rows here,
-- keyed by leaf index, and moves them into audit_imeis every 2,048 leaves.
-- PostgreSQL writes audit_imeis directly (store's dialect decides); the
-- table exists so that both dialects read the same tables for a lookup by
-- IMEI.

-- +goose Up
CREATE TABLE audit_imeis_staged (
    idx  BIGINT NOT NULL,
    imei TEXT   NOT NULL,
    PRIMARY KEY (idx, imei)
);

-- +goose Down
INSERT INTO audit_imeis (imei, idx) SELECT imei, idx FROM audit_imeis_staged;
DROP TABLE audit_imeis_staged;
