-- A role certificate is for one person (`tacline station enroll --roles R
-- --person NAME`, docs/api.md): the ledger keeps each such certificate by
-- its serial, so that an operator can disable a person's certificates
-- (`tacline station disable --person NAME`) without re-keying the station
-- CA; the API refuses a disabled one at the person's next request.
-- Certificates issued before this migration have no row and stay valid
-- until they expire.

-- +goose Up
CREATE TABLE people (
    cert_serial TEXT    PRIMARY KEY, -- lower-case hex, as stations.cert_serial
    person      TEXT    NOT NULL,
    roles       TEXT    NOT NULL,    -- comma separated
    enrolled_at INTEGER NOT NULL,
    disabled_at INTEGER                  -- NULL while enabled
);
CREATE INDEX people_person ON people (person);

-- +goose Down
DROP TABLE people;
