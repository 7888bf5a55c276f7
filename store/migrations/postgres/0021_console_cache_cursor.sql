-- The console's caches now carry a cursor over the reservations
-- (store.ActivityCursor) and are saved under new names ("activity.2",
-- "last_seen.2"). The activity saved in the old format, without a cursor,
-- is removed (a cache: the next start reads the hour once); the old
-- stations' last reservations are kept: the console reads them once, with
-- a cursor from the time they were read, instead of scanning every
-- reservation.

-- +goose Up
DELETE FROM console_cache WHERE name = 'activity';

-- +goose Down
DELETE FROM console_cache WHERE name IN ('activity.2', 'last_seen.2');
