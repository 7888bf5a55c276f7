-- Register outbox retention and cheap status counts (SQLite), owned by
-- package register. Acknowledged outbox rows older than register.retention
-- are deleted in batches (register.Prune); pending, sent and rejected rows
-- never are. register_outbox_stats holds:
--   acknowledged    the number of rows in state 'acknowledged', kept by the
--                   triggers below in the transaction that changes a row, so
--                   `tacline register status` reads it instead of counting;
--   pruned          the number of acknowledged rows deleted by retention;
--   pruned_through  the largest outbox id ever deleted (a DIRBS delta since
--                   an export whose high-water mark is below it is refused).

-- +goose Up
CREATE TABLE register_outbox_stats (
    name  TEXT    PRIMARY KEY CHECK (name IN ('acknowledged', 'pruned', 'pruned_through')),
    value INTEGER NOT NULL CHECK (value >= 0)
);
INSERT INTO register_outbox_stats (name, value)
    SELECT 'acknowledged', COUNT(*) FROM register_outbox WHERE state = 'acknowledged';
INSERT INTO register_outbox_stats (name, value) VALUES ('pruned', 0), ('pruned_through', 0);

-- +goose StatementBegin
CREATE TRIGGER register_outbox_acked_insert AFTER INSERT ON register_outbox
WHEN NEW.state = 'acknowledged'
BEGIN
    UPDATE register_outbox_stats SET value = value + 1 WHERE name = 'acknowledged';
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER register_outbox_acked_update AFTER UPDATE OF state ON register_outbox
WHEN (OLD.state = 'acknowledged') <> (NEW.state = 'acknowledged')
BEGIN
    UPDATE register_outbox_stats SET value = value + (CASE WHEN NEW.state = 'acknowledged' THEN 1 ELSE -1 END)
    WHERE name = 'acknowledged';
END;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE TRIGGER register_outbox_acked_delete AFTER DELETE ON register_outbox
WHEN OLD.state = 'acknowledged'
BEGIN
    UPDATE register_outbox_stats SET value = value - 1 WHERE name = 'acknowledged';
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER register_outbox_acked_delete;
DROP TRIGGER register_outbox_acked_update;
DROP TRIGGER register_outbox_acked_insert;
DROP TABLE register_outbox_stats;
