-- The audit log (SQLite), owned by package audit. Leaves are the canonical
-- encodings of ledger events (docs/audit-format.md); hashes are the RFC 6962
-- stored hashes of golang.org/x/mod/sumdb/tlog, keyed by
-- tlog.StoredHashIndex. Rows are never updated or deleted (triggers refuse);
-- only the single head row moves forward.

-- +goose Up
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    size INTEGER NOT NULL CHECK (size >= 0),
    root BLOB    NOT NULL CHECK (length(root) = 32)
);
-- the root of the empty tree: SHA-256 of the empty string
INSERT INTO audit_head (id, size, root)
VALUES (1, 0, X'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');

CREATE TABLE audit_leaves (
    idx  INTEGER PRIMARY KEY CHECK (idx >= 0),
    data BLOB    NOT NULL
);

CREATE TABLE audit_hashes (
    idx  INTEGER PRIMARY KEY CHECK (idx >= 0),
    hash BLOB    NOT NULL CHECK (length(hash) = 32)
);

-- which leaves name an IMEI (15 digits), for inclusion proofs by IMEI
CREATE TABLE audit_imeis (
    imei TEXT    NOT NULL,
    idx  INTEGER NOT NULL,
    PRIMARY KEY (imei, idx)
) WITHOUT ROWID;

CREATE TABLE audit_checkpoints (
    size       INTEGER PRIMARY KEY CHECK (size >= 0),
    root       BLOB    NOT NULL CHECK (length(root) = 32),
    note       TEXT    NOT NULL, -- the signed note
    vkey       TEXT    NOT NULL, -- the signer's verifier key
    created_at INTEGER NOT NULL
);

CREATE TRIGGER audit_leaves_no_update BEFORE UPDATE ON audit_leaves
BEGIN SELECT RAISE(ABORT, 'audit_append_only: UPDATE on audit_leaves is not allowed, the audit log only grows'); END;
CREATE TRIGGER audit_leaves_no_delete BEFORE DELETE ON audit_leaves
BEGIN SELECT RAISE(ABORT, 'audit_append_only: DELETE on audit_leaves is not allowed, the audit log only grows'); END;
CREATE TRIGGER audit_hashes_no_update BEFORE UPDATE ON audit_hashes
BEGIN SELECT RAISE(ABORT, 'audit_append_only: UPDATE on audit_hashes is not allowed, the audit log only grows'); END;
CREATE TRIGGER audit_hashes_no_delete BEFORE DELETE ON audit_hashes
BEGIN SELECT RAISE(ABORT, 'audit_append_only: DELETE on audit_hashes is not allowed, the audit log only grows'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_append_only: UPDATE on audit_checkpoints is not allowed, the audit log only grows'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_append_only: DELETE on audit_checkpoints is not allowed, the audit log only grows'); END;

-- +goose Down
DROP TABLE audit_checkpoints;
DROP TABLE audit_imeis;
DROP TABLE audit_hashes;
DROP TABLE audit_leaves;
DROP TABLE audit_head;
