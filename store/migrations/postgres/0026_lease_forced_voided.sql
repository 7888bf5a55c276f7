-- How many SNRs a forced return of a lease voided (`tacline lease return
-- ID --force`, docs/sites.md). It was counted as every lease_returned SNR
-- of the lease, which also counts the SNRs a site's release voided when
-- the release ended the lease while its forced return ran. Each chunk of a
-- forced return now adds what it voided in its own transaction. A lease a
-- forced return touched before this migration gets the count of its
-- lease_returned SNRs (the figure shown until now: nothing tells the two
-- apart any more).

-- +goose Up
ALTER TABLE leases ADD COLUMN forced_voided BIGINT NOT NULL DEFAULT 0;
UPDATE leases SET forced_voided = (
    SELECT COUNT(*) FROM imeis i
    WHERE i.imei14 BETWEEN leases.tac * 1000000 + leases.snr_start AND leases.tac * 1000000 + leases.snr_end
      AND i.reason = 'lease_returned')
WHERE forced_at IS NOT NULL;

-- +goose Down
ALTER TABLE leases DROP COLUMN forced_voided;
