-- The audit log (PostgreSQL), owned by package audit. Leaves are the
-- canonical encodings of ledger events (docs/audit-format.md); hashes are the
-- RFC 6962 stored hashes of golang.org/x/mod/sumdb/tlog, keyed by
-- tlog.StoredHashIndex. Rows are never updated or deleted (triggers refuse);
-- only the single head row moves forward.

-- +goose Up
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    size BIGINT  NOT NULL CHECK (size >= 0),
    root BYTEA   NOT NULL CHECK (length(root) = 32)
);
-- the root of the empty tree: SHA-256 of the empty string
INSERT INTO audit_head (id, size, root)
VALUES (1, 0, decode('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', 'hex'));

CREATE TABLE audit_leaves (
    idx  BIGINT PRIMARY KEY CHECK (idx >= 0),
    data BYTEA  NOT NULL
);

CREATE TABLE audit_hashes (
    idx  BIGINT PRIMARY KEY CHECK (idx >= 0),
    hash BYTEA  NOT NULL CHECK (length(hash) = 32)
);

-- which leaves name an IMEI (15 digits), for inclusion proofs by IMEI
CREATE TABLE audit_imeis (
    imei TEXT   NOT NULL,
    idx  BIGINT NOT NULL,
    PRIMARY KEY (imei, idx)
);

CREATE TABLE audit_checkpoints (
    size       BIGINT PRIMARY KEY CHECK (size >= 0),
    root       BYTEA  NOT NULL CHECK (length(root) = 32),
    note       TEXT   NOT NULL, -- the signed note
    vkey       TEXT   NOT NULL, -- the signer's verifier key
    created_at BIGINT NOT NULL
);

-- +goose StatementBegin
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_append_only: % on % is not allowed, the audit log only grows', TG_OP, TG_TABLE_NAME;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER audit_leaves_append_only BEFORE UPDATE OR DELETE ON audit_leaves
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_hashes_append_only BEFORE UPDATE OR DELETE ON audit_hashes
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();

-- +goose Down
DROP TABLE audit_checkpoints;
DROP TABLE audit_imeis;
DROP TABLE audit_hashes;
DROP TABLE audit_leaves;
DROP TABLE audit_head;
DROP FUNCTION audit_append_only();
