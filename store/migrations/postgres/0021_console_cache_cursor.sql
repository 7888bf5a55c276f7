-- The console's caches now carry a cursor over the reservations
-- (store.ActivityCursor) and are saved under new names ("activity.2",
-- "last_seen.2"): the rows saved in the old format, without a cursor, are
-- removed (a cache: the next start reads in full once).

-- +goose Up
DELETE FROM console_cache WHERE name IN ('activity', 'last_seen');

-- +goose Down
DELETE FROM console_cache WHERE name IN ('activity.2', 'last_seen.2');
