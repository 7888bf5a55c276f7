-- The audit tree's right edge in the head row (issue 14, three replicas on
-- one PostgreSQL; docs/benchmarks.md "Session 8 (branch auditedge)"): the
-- stored hashes of the complete subtrees that make up the tree of the
-- head's size, left to right, concatenated (about log2 N of 32 bytes). An
-- append reads nothing else of the tree, so the statement that takes the
-- head's lock returns all it needs: a replica whose guessed head was
-- moved by another one reads no stored hash. Package audit uses the edge
-- only when it hashes to the head's root (the root proves it), and reads
-- the stored hashes otherwise; NULL until the first append after this
-- migration writes it.

-- +goose Up
ALTER TABLE audit_head ADD COLUMN edge BYTEA CHECK (length(edge) % 32 = 0);

-- +goose Down
ALTER TABLE audit_head DROP COLUMN edge;
