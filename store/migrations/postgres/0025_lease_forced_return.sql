-- A forced return of a lease (`tacline lease return ID --force`,
-- docs/sites.md) works in committed chunks and may be interrupted; the
-- lease then stays held with some of its SNRs voided. HQ records when the
-- first chunk committed, so that `tacline lease list` shows the return
-- as started and unfinished (with the SNRs voided so far) until a run of
-- the same command ends the lease. A lease whose forced return was
-- interrupted before this migration gets the time of its first voided SNR.

-- +goose Up
ALTER TABLE leases ADD COLUMN forced_at BIGINT;
UPDATE leases SET forced_at = (
    SELECT MIN(i.voided_at) FROM imeis i
    WHERE i.imei14 BETWEEN leases.tac * 1000000 + leases.snr_start AND leases.tac * 1000000 + leases.snr_end
      AND i.reason = 'lease_returned')
WHERE returned_at IS NULL;

-- +goose Down
ALTER TABLE leases DROP COLUMN forced_at;
