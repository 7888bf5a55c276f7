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
// exactly-once (store.ApplySiteEvents). Every event carries its leaf in
// the site's audit log and the leaf's inclusion proof in the checkpoint:
// HQ applies only events the site's signed log holds, exactly as shipped.
// HQ then cosigns the checkpoint as a witness does (C2SP
// tlog-cosignature/v1, its Ed25519 witness key in its HSM), so the site
// cannot later present another history of that size.
//
// Site promises, besides its outbox order: it keeps HQ's cosigned
// checkpoint in its ledger and in a file outside it, and refuses to issue
// (site_not_current) when its ledger does not extend it, even while HQ is
// unreachable.
//
// Returns: a site releases a lease (HQ asked, it expired, or an operator
// ran `tacline lease release`) by closing its pool and writing
// lease.released with the lease's first SNR never reserved; HQ applies it
// from a verified batch (its leaf proven, like every event's) and hands
// the SNRs from that mark back to the pool for other sites' leases
// (docs/sites.md, "Returns"). HQ's lease policy (hq.lease, LeasePolicy)
// bounds every grant.
package site
