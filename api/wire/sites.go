package wire

import "time"

// Routes of the sites API (docs/sites.md): a site, authenticated by its
// client certificate (`urn:tacline:site:<name>`), asks HQ for leases and
// ships its ledger events; operators read every site's status.
const (
	PathSiteLeases = "/v1/sites/{site}/leases"
	PathSiteSync   = "/v1/sites/{site}/sync"
	PathSiteStatus = "/v1/sites/{site}/status"
)

// LeaseRequest is the body of POST /v1/sites/{site}/leases: the next block
// of Size SNRs of Pool.
type LeaseRequest struct {
	Pool string `json:"pool"`
	Size int64  `json:"size"`
	// RequestID is the site's id for this request, written to its ledger
	// before it asks (store.LeaseAsk): HQ answers an id it has seen with
	// the lease it granted for it, not with another.
	RequestID string `json:"request_id,omitempty"`
}

// Lease is a block of SNRs leased to a site (the body of a granted lease,
// and an element of SiteStatus.Leases).
type Lease struct {
	ID   int64  `json:"id"`
	Site string `json:"site"`
	Pool string `json:"pool"`
	// The HQ pool's facts, which the site's pool of the lease copies.
	Factory  string `json:"factory,omitempty"`
	Line     string `json:"line,omitempty"`
	Product  string `json:"product,omitempty"`
	Market   string `json:"market,omitempty"`
	TAC      string `json:"tac"`       // 8 digits
	SNRStart string `json:"snr_start"` // 6 digits
	SNREnd   string `json:"snr_end"`   // 6 digits, inclusive
	// PoolSNRStart and PoolSNREnd are the HQ pool's whole range (6
	// digits): a site's stations check their IMEIs against it.
	PoolSNRStart string    `json:"pool_snr_start,omitempty"`
	PoolSNREnd   string    `json:"pool_snr_end,omitempty"`
	GrantedAt    time.Time `json:"granted_at"`
	ExpiresAt    time.Time `json:"expires_at"`
	// ReturnedAt is set once the lease was returned.
	ReturnedAt *time.Time `json:"returned_at,omitempty"`
	// ReturnRequestedAt is set once an operator at HQ asked the site to
	// release the lease (the site does at its next status read).
	ReturnRequestedAt *time.Time `json:"return_requested_at,omitempty"`
	// ReletOf is the returned lease this one was cut from (absent: from
	// the pool's high-water mark).
	ReletOf int64 `json:"relet_of,omitempty"`
	Bound   int64 `json:"bound"`
	Voided  int64 `json:"voided"`
	Revoked int64 `json:"revoked"`
	Unused  int64 `json:"unused"` // leased and not yet reported used
	// Released is how many SNRs the site's release proved never reserved
	// and handed back to the pool; Relet how many of those were leased
	// again.
	Released int64 `json:"released"`
	Relet    int64 `json:"relet"`
	// Waiting is set while a lease an operator granted waits for the site:
	// the site's next lease request claims it.
	Waiting bool `json:"waiting,omitempty"`
}

// SiteEvent is one ledger event a site ships to HQ.
type SiteEvent struct {
	Seq          int64     `json:"seq"`  // the site's sequence number: strictly increasing
	Type         string    `json:"type"` // imei.bound, imei.voided, imei.revoked, device.reissued, lease.released
	Time         time.Time `json:"time"`
	RequestID    string    `json:"request_id,omitempty"`
	IMEIs        []string  `json:"imeis"` // 15 digits (empty for lease.released)
	DeviceSerial string    `json:"device_serial,omitempty"`
	CertSerial   string    `json:"cert_serial,omitempty"`
	Reason       string    `json:"reason,omitempty"`
	// PreviousCertSerial is a reissue's replaced certificate.
	PreviousCertSerial string `json:"previous_cert_serial,omitempty"`
	// Lease and UnusedFrom are a lease.released event's: HQ's lease id and
	// its first SNR the site never reserved (6 digits; absent when none
	// is left). Every SNR below it was reported before in the site's log.
	Lease      int64  `json:"lease,omitempty"`
	UnusedFrom string `json:"unused_from,omitempty"`
	// LeafIndex is the index of the event's leaf in the site's audit log,
	// Leaf that leaf (docs/audit-format.md section 1; base64 in JSON) and
	// Proof its RFC 6962 inclusion proof (tlog.ProveRecord, base64
	// hashes) in the tree of the request's checkpoint. HQ refuses the
	// batch unless the proof holds and the leaf decodes to this event.
	LeafIndex int64    `json:"leaf_index"`
	Leaf      []byte   `json:"leaf"`
	Proof     []string `json:"proof"`
}

// MaxSyncBodyBytes bounds the body of POST /v1/sites/{site}/sync (every
// other request body is bounded by MaxBodyBytes): each event carries its
// audit leaf and inclusion proof, about 1.5 KiB in a log of a million
// leaves, so a full batch of 200 events needs some 300 KiB.
const MaxSyncBodyBytes = 4 << 20

// SiteSyncRequest is the body of POST /v1/sites/{site}/sync: a batch of
// events with the site's signed audit checkpoint (a C2SP signed note) and
// the consistency proof from the checkpoint HQ verified last
// (SiteSyncResponse.VerifiedSize) to this one, base64 hashes.
type SiteSyncRequest struct {
	Events     []SiteEvent `json:"events"`
	Checkpoint string      `json:"checkpoint"`
	// ProofFrom is the size the proof starts from: the size the site
	// believes HQ verified last. HQ answers conflict when it verified
	// another (the site lost an answer): the site reads HQ's status and
	// sends again.
	ProofFrom int64    `json:"proof_from"`
	Proof     []string `json:"proof,omitempty"`
}

// SiteSyncResponse says what HQ applied, and carries the checkpoint with
// HQ's cosignature added (the site keeps it as proof that HQ saw its log).
type SiteSyncResponse struct {
	Applied      int    `json:"applied"`
	Skipped      int    `json:"skipped"`     // applied before: a retried batch
	AppliedSeq   int64  `json:"applied_seq"` // the last event applied
	VerifiedSize int64  `json:"verified_size"`
	Cosigned     string `json:"cosigned"`
}

// SiteStatus is HQ's view of one site (GET /v1/sites/{site}/status, and
// `tacline site status --json`).
type SiteStatus struct {
	Site         string     `json:"site"`
	Leases       []Lease    `json:"leases"`
	LeasedSNRs   int64      `json:"leased_snrs"` // of leases still held
	Bound        int64      `json:"bound"`
	Voided       int64      `json:"voided"`
	Revoked      int64      `json:"revoked"`
	Unused       int64      `json:"unused"`
	Released     int64      `json:"released"` // SNRs its releases handed back to the pools
	Relet        int64      `json:"relet"`    // of those, leased again
	LastSync     *time.Time `json:"last_sync,omitempty"`
	AppliedSeq   int64      `json:"applied_seq"`
	VerifiedSize int64      `json:"verified_size"` // the last verified checkpoint's size
	VerifiedRoot string     `json:"verified_root,omitempty"`
	Consistent   bool       `json:"consistent"` // no batch refused since the last accepted one
	Refusals     int64      `json:"refusals"`
	LastRefusal  string     `json:"last_refusal,omitempty"`
}
