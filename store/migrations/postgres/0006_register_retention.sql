-- Register outbox retention and cheap status counts (PostgreSQL), owned by
-- package register. Acknowledged outbox rows older than register.retention
-- are deleted in batches (register.Prune); pending, sent and rejected rows
-- never are. register_outbox_stats holds:
--   acknowledged    the number of rows in state 'acknowledged', kept by the
--                   triggers below in the transaction that changes a row, so
--                   `tacline register status` reads it instead of counting;
--   pruned          the number of acknowledged rows deleted by retention;
--   pruned_through  the largest outbox id ever deleted (a DIRBS delta since
--                   an export whose high-water mark is below it is refused).
-- Only acknowledgements and deletions touch the counter row (the claim,
-- retry and provisioning writes do not), so it is no hot spot for
-- provisioning; a batch delete updates it once (a statement trigger).

-- +goose Up
-- Writers wait while the counter is initialised and the triggers created,
-- so no acknowledgement falls between the count and the triggers.
LOCK TABLE register_outbox IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE register_outbox_stats (
    name  TEXT   PRIMARY KEY CHECK (name IN ('acknowledged', 'pruned', 'pruned_through')),
    value BIGINT NOT NULL CHECK (value >= 0)
);
INSERT INTO register_outbox_stats (name, value)
    SELECT 'acknowledged', COUNT(*) FROM register_outbox WHERE state = 'acknowledged';
INSERT INTO register_outbox_stats (name, value) VALUES ('pruned', 0), ('pruned_through', 0);

-- +goose StatementBegin
CREATE FUNCTION register_outbox_acked_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE register_outbox_stats SET value = value + 1 WHERE name = 'acknowledged';
    ELSIF NEW.state = 'acknowledged' THEN
        UPDATE register_outbox_stats SET value = value + 1 WHERE name = 'acknowledged';
    ELSE
        UPDATE register_outbox_stats SET value = value - 1 WHERE name = 'acknowledged';
    END IF;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION register_outbox_acked_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n BIGINT;
BEGIN
    SELECT COUNT(*) INTO n FROM deleted_rows WHERE state = 'acknowledged';
    IF n > 0 THEN
        UPDATE register_outbox_stats SET value = value - n WHERE name = 'acknowledged';
    END IF;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER register_outbox_acked_insert AFTER INSERT ON register_outbox
    FOR EACH ROW WHEN (NEW.state = 'acknowledged') EXECUTE FUNCTION register_outbox_acked_row();
CREATE TRIGGER register_outbox_acked_update AFTER UPDATE OF state ON register_outbox
    FOR EACH ROW WHEN ((OLD.state = 'acknowledged') <> (NEW.state = 'acknowledged'))
    EXECUTE FUNCTION register_outbox_acked_row();
CREATE TRIGGER register_outbox_acked_delete AFTER DELETE ON register_outbox
    REFERENCING OLD TABLE AS deleted_rows FOR EACH STATEMENT EXECUTE FUNCTION register_outbox_acked_deleted();

-- +goose Down
DROP TRIGGER register_outbox_acked_delete ON register_outbox;
DROP TRIGGER register_outbox_acked_update ON register_outbox;
DROP TRIGGER register_outbox_acked_insert ON register_outbox;
DROP FUNCTION register_outbox_acked_deleted();
DROP FUNCTION register_outbox_acked_row();
DROP TABLE register_outbox_stats;
