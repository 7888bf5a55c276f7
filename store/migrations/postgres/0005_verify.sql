-- Authenticity checks and revocation (postgres): single-use challenge nonces
-- shared by every replica, and one CRL per device issuer with its
-- monotonic CRL number. Times are Unix microseconds, UTC.

-- +goose Up
CREATE TABLE challenges (
    nonce      BYTEA   PRIMARY KEY,
    client     TEXT    NOT NULL DEFAULT '', -- who asked (actor or client address)
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL,
    used_at    BIGINT
);
CREATE INDEX challenges_expiry ON challenges (expires_at);

-- number is the last CRL number handed out for the issuer; the other
-- columns hold the latest CRL published (published <= number).
CREATE TABLE crls (
    issuer_key_id TEXT    PRIMARY KEY,
    number        BIGINT  NOT NULL,
    published     BIGINT  NOT NULL DEFAULT 0,
    revoked       BIGINT  NOT NULL DEFAULT 0, -- entries in the published CRL
    this_update   BIGINT  NOT NULL DEFAULT 0,
    next_update   BIGINT  NOT NULL DEFAULT 0,
    der           BYTEA
);

-- +goose Down
DROP TABLE crls;
DROP TABLE challenges;
