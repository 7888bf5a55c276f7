// Package site is headquarters' side of several factories on leased SNR
// blocks (docs/sites.md). HQ leases blocks of SNRs to sites (store's
// GrantLease); each site provisions from its leases with its own ledger and
// ships its ledger events, with its signed audit checkpoint, to HQ.
//
// HQ.Sync promises: a batch is applied only when the site's checkpoint
// verifies under the site's enrolled key and, by an RFC 6962 consistency
// proof (golang.org/x/mod/sumdb/tlog), extends the checkpoint HQ verified
// last (the site's log only grew), and when every event's IMEI lies in a
// lease the site holds; otherwise nothing of it is applied, the refusal is
// recorded for `tacline site status`, and tacline_site_sync_refused_total
// counts it (an alert: a rewritten log or a cloning signal). Applying is
// exactly-once (store.ApplySiteEvents). HQ then cosigns the checkpoint: it
// adds its own signature line to the site's signed note, as a witness does,
// so the site cannot later present another history of that size.
//
// Returns: a site releases a lease (HQ asked, it expired, or an operator
// ran `tacline lease release`) by closing its pool and writing
// lease.released with the lease's first SNR never reserved; HQ applies it
// from a verified batch and hands the SNRs from that mark back to the pool
// for other sites' leases (docs/sites.md, "Returns"). HQ's lease policy
// (hq.lease, LeasePolicy) bounds every grant.
package site
