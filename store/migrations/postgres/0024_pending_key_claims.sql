-- A provision or bind intent claims its device key in device_keys in the
-- transaction that records it (store.claimKeys), no longer at binding
-- only, so that of two requests with one key the loser reserves nothing;
-- an abandoned intent's claim is released. Intents pending at the upgrade
-- claim theirs here, oldest first. One whose key another device holds (or
-- an older pending intent claimed here) gets no claim: its binding is then
-- refused key_reused, as before, and abandoned at once.

-- +goose Up
INSERT INTO device_keys (spki_hash, device_serial)
    SELECT spki_hash, device_serial FROM issuances WHERE state = 'pending' AND kind IN ('provision', 'bind') ORDER BY created_at, request_id
    ON CONFLICT (spki_hash) DO NOTHING;

-- +goose Down
-- The claims of intents still pending stay: their bindings meet them.
SELECT 1;
