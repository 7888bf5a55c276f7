-- Three secondary indexes that repeated a uniqueness or a lookup another
-- index already gives (issue 14, docs/benchmarks.md "Where the writes go";
-- the SQLite migration of the same number explains each):
-- device_claims_request (a claim is released by its serial),
-- reservations_device ("is this device provisioned" reads imeis_device)
-- and the UNIQUE constraint on certificates.request_id (an intent names
-- exactly one certificate serial; a request's certificate is read through
-- its intent).

-- +goose Up
DROP INDEX device_claims_request;
DROP INDEX reservations_device;
ALTER TABLE certificates DROP CONSTRAINT certificates_request_id_key;

-- +goose Down
ALTER TABLE certificates ADD CONSTRAINT certificates_request_id_key UNIQUE (request_id);
CREATE INDEX reservations_device ON reservations (device_serial) WHERE device_serial <> '';
CREATE INDEX device_claims_request ON device_claims (request_id);
