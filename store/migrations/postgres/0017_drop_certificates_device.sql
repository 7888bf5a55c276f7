-- certificates_device (certificates by device serial) has no reader on
-- either database: a device's certificate is read by its serial (the
-- primary key, devices.cert_serial) or through its intent. SQLite dropped
-- it in 0015; here it cost an index entry per device in every bind's
-- commit, for nothing (docs/benchmarks.md "Session 6 (branch sqlbytes2)").

-- +goose Up
DROP INDEX certificates_device;

-- +goose Down
CREATE INDEX certificates_device ON certificates (device_serial);
