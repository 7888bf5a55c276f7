package store

import (
	"context"
	"database/sql"
	"github.com/tacline/tacline/lifecycle"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/tacerr"
)

// Sites and leases: headquarters (HQ) leases blocks of SNRs from its pools
// to factory sites, each running its own ledger (docs/sites.md). These
// methods are HQ's side; the contract of each is written on it.
//
// A lease takes its block from the SNRs a proven release handed back to
// its pool (oldest returned lease first), else from the pool's high-water
// mark, so HQ's own allocator never hands its SNRs out and pools keep their
// promise that SNRs are handed out in order below next_snr. An SNR of a
// lease has no imeis row until the site's events arrive (ApplySiteEvents),
// or until the lease is returned: released by the site with its proof
// (lease.released: SNRs below its mark never reported are voided, the rest
// handed back for re-leasing) or returned without it (ReturnLease voids
// every SNR the site never reported). Check counts such SNRs as leased and
// not yet used, or handed back and not yet leased again.

// Event types of sites and leases.
const (
	EventSiteEnrolled  = "site.enrolled"
	EventLeaseGranted  = "lease.granted"
	EventLeaseReturned = "lease.returned"
	// EventLeaseReturnRequested: an operator at HQ asked the site to
	// release a lease (it does at its next status read).
	EventLeaseReturnRequested = "lease.return_requested"
	// EventLeaseReleased is a site's event (in its audit log, shipped to
	// HQ): it closed a lease's pool for allocation; the event carries the
	// lease's first SNR it never reserved.
	EventLeaseReleased = "lease.released"
)

// VoidLeaseReturned is the void reason of the unused SNRs of a returned
// lease: they are never handed out again.
const VoidLeaseReturned = lifecycle.VoidLeaseReturned

// SiteCaller is the reservations.caller of the rows HQ records for a
// site's devices.
func SiteCaller(site string) string { return "site:" + site }

// Site is a factory site enrolled at HQ.
type Site struct {
	Name        string
	Description string
	CertSerial  string // the serial (hex) of its mTLS client certificate
	// Verifier is the C2SP signed-note verifier key of the site's audit
	// checkpoints ("name+hash+key").
	Verifier string
	// Pools are the HQ pools the site may be leased blocks of.
	Pools      []string
	EnrolledAt time.Time
}

var (
	siteName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	// verifierShape is a C2SP verifier key's form: name+hash+base64 key
	// (package audit parses it; this catches a pasted wrong value early).
	verifierShape = regexp.MustCompile(`^[^+\s]+\+[0-9a-f]{8}\+[A-Za-z0-9+/]+=*$`)
)

// ValidSiteName reports whether name may name a site: 1-32 lower-case
// letters, digits or '-', starting with a letter or digit.
func ValidSiteName(name string) bool { return siteName.MatchString(name) }

// SiteState is a site with what HQ knows of its sync.
type SiteState struct {
	Site
	AppliedSeq int64 // the sequence number of the last site event applied
	// AppliedLeaf is the audit leaf index of the last site event applied
	// (-1: none since migration 0022).
	AppliedLeaf int64
	Checkpoint  SiteCheckpoint
	LastSync    time.Time // zero if never
	Refusals    int64     // batches refused (inconsistent checkpoint, IMEI outside the site's leases)
	// LastRefusal says why the last batch was refused.
	LastRefusal string
}

// SiteCheckpoint is the last site audit checkpoint HQ verified: the tree
// size and root hash, the signed note, and HQ's cosignature line on it.
type SiteCheckpoint struct {
	Size     int64
	Hash     []byte
	Note     string
	Cosigned string
	// From, given to ApplySiteEvents, is the checkpoint (size and hash)
	// the caller proved this one extends; nil: not checked there.
	From *SiteCheckpoint
}

type siteRow struct {
	Name        string        `db:"name"`
	Description string        `db:"description"`
	CertSerial  string        `db:"cert_serial"`
	Verifier    string        `db:"verifier"`
	Pools       string        `db:"pools"`
	EnrolledAt  int64         `db:"enrolled_at"`
	AppliedSeq  int64         `db:"applied_seq"`
	AppliedLeaf sql.NullInt64 `db:"applied_leaf"`
	CPSize      int64         `db:"cp_size"`
	CPHash      []byte        `db:"cp_hash"`
	CPNote      string        `db:"cp_note"`
	CPCosigned  string        `db:"cp_cosigned"`
	LastSync    sql.NullInt64 `db:"last_sync_at"`
	Refusals    int64         `db:"refusals"`
	LastRefusal string        `db:"last_refusal"`
}

func (r siteRow) state() SiteState {
	st := SiteState{
		Site: Site{Name: r.Name, Description: r.Description, CertSerial: r.CertSerial, Verifier: r.Verifier,
			Pools: splitList(r.Pools), EnrolledAt: micros(r.EnrolledAt)},
		AppliedSeq: r.AppliedSeq, AppliedLeaf: -1,
		Checkpoint: SiteCheckpoint{Size: r.CPSize, Hash: r.CPHash, Note: r.CPNote, Cosigned: r.CPCosigned},
		LastSync:   nullMicros(r.LastSync), Refusals: r.Refusals, LastRefusal: r.LastRefusal,
	}
	if r.AppliedLeaf.Valid {
		st.AppliedLeaf = r.AppliedLeaf.Int64
	}
	return st
}

const sqlSelectSites = `SELECT name, description, cert_serial, verifier, pools, enrolled_at, applied_seq, applied_leaf, cp_size, cp_hash, cp_note,
	cp_cosigned, last_sync_at, refusals, last_refusal FROM sites`

// EnrollSite records a site, or on a second enrolment replaces its
// certificate serial, verifier key, pools and description (a renewed
// certificate, a rotated checkpoint key) keeping its leases and sync
// state; it emits site.enrolled. Every pool must exist. Errors:
// invalid_input naming the field, pool_not_found.
func (db *DB) EnrollSite(ctx context.Context, s Site, actor string) error {
	switch {
	case !ValidSiteName(s.Name):
		return tacerr.Field(tacerr.InvalidInput, "site", "site name %q must be 1-32 lower-case letters, digits or '-'", s.Name)
	case !verifierShape.MatchString(s.Verifier):
		return tacerr.Field(tacerr.InvalidInput, "verifier", "%q is not a checkpoint verifier key (name+hash+key, as `tacline audit key` prints it at the site)", s.Verifier)
	}
	return db.InTx(ctx, func(tx *Tx) error {
		for _, p := range s.Pools {
			if _, err := poolByName(txQuerier{tx}, p); err != nil {
				return err
			}
		}
		pools := strings.Join(s.Pools, ",")
		now := tx.Now().UnixMicro()
		res, err := tx.exec(tx.rebind(`UPDATE sites SET description = ?, cert_serial = ?, verifier = ?, pools = ? WHERE name = ?`),
			s.Description, s.CertSerial, s.Verifier, pools, s.Name)
		if err != nil {
			return translate(err, "update site")
		}
		if n, _ := res.RowsAffected(); n == 0 {
			if _, err := tx.exec(tx.rebind(`INSERT INTO sites (name, description, cert_serial, verifier, pools, enrolled_at) VALUES (?,?,?,?,?,?)`),
				s.Name, s.Description, s.CertSerial, s.Verifier, pools, now); err != nil {
				return translate(err, "enroll site")
			}
		}
		tx.Emit(Event{Type: EventSiteEnrolled, Actor: actor, Attrs: map[string]string{"site": s.Name, "cert_serial": s.CertSerial,
			"verifier": s.Verifier, "pools": pools}})
		return nil
	})
}

// Sites returns every enrolled site with its sync state, ordered by name.
func (db *DB) Sites(ctx context.Context) ([]SiteState, error) {
	var rows []siteRow
	if err := db.r.SelectContext(ctx, &rows, sqlSelectSites+` ORDER BY name`); err != nil {
		return nil, translate(err, "list sites")
	}
	out := make([]SiteState, len(rows))
	for i, r := range rows {
		out[i] = r.state()
	}
	return out, nil
}

// SiteByName returns one site, or not_found.
func (db *DB) SiteByName(ctx context.Context, name string) (SiteState, error) {
	return siteByName(db.r, name)
}

func siteByName(q querier, name string) (SiteState, error) {
	var r siteRow
	if err := q.Get(&r, q.Rebind(sqlSelectSites+` WHERE name = ?`), name); err != nil {
		if noRows(err) {
			return SiteState{}, tacerr.Field(tacerr.NotFound, "site", "site %q is not enrolled; `tacline site enroll` enrolls it", name)
		}
		return SiteState{}, translate(err, "look up site")
	}
	return r.state(), nil
}

// Lease is a block of SNRs of one pool leased to a site.
type Lease struct {
	ID         int64
	Site       string
	Pool       string
	TAC        uint32
	SNRStart   uint32
	SNREnd     uint32 // inclusive
	GrantedAt  time.Time
	ExpiresAt  time.Time
	ReturnedAt time.Time // zero while held
	// ReturnRequestedAt is when an operator asked the site to release the
	// lease (zero: not asked).
	ReturnRequestedAt time.Time
	// ReletOf is the returned lease this one was cut from (0: from the
	// pool's high-water mark).
	ReletOf int64
	// Released is how many SNRs of the lease its site's release proved
	// never reserved and handed back to the pool; Relet how many of those
	// were leased again since.
	Released, Relet int64
	// Waiting is set while a lease an operator granted (GrantLease) waits
	// for its site: the site's next request claims it (GrantAskedLease).
	Waiting bool
	// ForcedAt is when the first chunk of a forced return
	// (ReturnLeaseChunks) committed (zero: none began). With ReturnedAt
	// zero, the forced return was interrupted: running it again finishes
	// it.
	ForcedAt time.Time
}

// Size is the number of SNRs of the lease.
func (l Lease) Size() int64 { return int64(l.SNREnd) - int64(l.SNRStart) + 1 }

// Contains reports whether m lies in the lease.
func (l Lease) Contains(m imei.IMEI) bool {
	return m.TAC() == l.TAC && m.SNR() >= l.SNRStart && m.SNR() <= l.SNREnd
}

// Held reports whether the site holds the lease at now: not returned and
// not expired. A site issues only from held leases; HQ accepts a site's
// events for IMEIs of any lease not returned (events of devices bound
// before expiry arrive after it when the link was down).
func (l Lease) Held(now time.Time) bool { return l.ReturnedAt.IsZero() && now.Before(l.ExpiresAt) }

// LeaseStats is a lease with what HQ knows of its SNRs' fate.
type LeaseStats struct {
	Lease
	Bound   int64 // BOUND rows recorded from the site's events
	Voided  int64
	Revoked int64
	Unused  int64 // leased and not yet used: no row at HQ (0 once returned)
	// ForcedVoided is how many SNRs forced returns of the lease voided
	// (reason lease_returned), by every run, counted in each chunk's
	// transaction: not the SNRs a site's release voided when it ended the
	// lease while a forced return ran (migration 0026).
	ForcedVoided int64
}

type leaseRow struct {
	ID                int64          `db:"id"`
	Site              string         `db:"site"`
	Pool              string         `db:"pool"`
	PoolID            int64          `db:"pool_id"`
	TAC               int64          `db:"tac"`
	SNRStart          int64          `db:"snr_start"`
	SNREnd            int64          `db:"snr_end"`
	GrantedAt         int64          `db:"granted_at"`
	ExpiresAt         int64          `db:"expires_at"`
	ReturnedAt        sql.NullInt64  `db:"returned_at"`
	ReturnRequestedAt sql.NullInt64  `db:"return_requested_at"`
	ReleasedFrom      sql.NullInt64  `db:"released_from"`
	ReletNext         sql.NullInt64  `db:"relet_next"`
	ReletOf           sql.NullInt64  `db:"relet_of"`
	ByOperator        int64          `db:"by_operator"`
	RequestID         sql.NullString `db:"request_id"`
	ForcedAt          sql.NullInt64  `db:"forced_at"`
	ForcedVoided      int64          `db:"forced_voided"`
}

func (r leaseRow) lease() Lease {
	l := Lease{ID: r.ID, Site: r.Site, Pool: r.Pool, TAC: uint32(r.TAC), SNRStart: uint32(r.SNRStart), SNREnd: uint32(r.SNREnd),
		GrantedAt: micros(r.GrantedAt), ExpiresAt: micros(r.ExpiresAt), ReturnedAt: nullMicros(r.ReturnedAt),
		ReturnRequestedAt: nullMicros(r.ReturnRequestedAt), ReletOf: r.ReletOf.Int64, Waiting: r.ByOperator == 1 && !r.RequestID.Valid,
		ForcedAt: nullMicros(r.ForcedAt)}
	if r.ReleasedFrom.Valid {
		l.Released = r.SNREnd + 1 - r.ReleasedFrom.Int64
		l.Relet = r.ReletNext.Int64 - r.ReleasedFrom.Int64
	}
	return l
}

// lo and hi are the lease's first and last 14-digit IMEI; usedHi is the
// last one still the lease's: below the SNRs a proven release handed back
// (usedHi < lo when the site released the lease unused).
func (r leaseRow) lo() int64 { return r.TAC*imei.SNRsPerTAC + r.SNRStart }
func (r leaseRow) hi() int64 { return r.TAC*imei.SNRsPerTAC + r.SNREnd }
func (r leaseRow) usedHi() int64 {
	if r.ReleasedFrom.Valid {
		return r.TAC*imei.SNRsPerTAC + r.ReleasedFrom.Int64 - 1
	}
	return r.hi()
}

const sqlSelectLeases = `SELECT l.id, l.site, p.name AS pool, l.pool_id, l.tac, l.snr_start, l.snr_end, l.granted_at, l.expires_at,
	l.returned_at, l.return_requested_at, l.released_from, l.relet_next, l.relet_of, l.by_operator, l.request_id, l.forced_at, l.forced_voided
	FROM leases l JOIN pools p ON p.id = l.pool_id`

// LeaseLimits are HQ's bounds on a lease grant (hq.lease in the
// configuration); a zero field sets no bound.
type LeaseLimits struct {
	MaxSize int64         // SNRs in one lease
	MaxTTL  time.Duration // a lease's lifetime
	MaxHeld int           // leases a site holds (not returned, not expired) of one pool
}

// GrantLease leases a block of at most size SNRs of pool to site for ttl,
// within lim, and emits lease.granted: an operator's grant (`tacline lease
// grant`), which waits for the site (Lease.Waiting) until the site's next
// request claims it (GrantAskedLease). The block comes from the SNRs a
// proven release of another site's lease handed back to the pool (the
// oldest returned lease first; the block is then no larger than what is
// left of that lease's handed-back part), else from the pool's high-water
// mark, which moves past it in the same transaction. A site is never
// re-leased SNRs it released itself (its ledger keeps the released lease's
// pool). The pool must be one of the site's pools. Errors: invalid_input
// (size, ttl, naming the limit), conflict (the site holds lim.MaxHeld
// leases of the pool already), not_found (site), forbidden (not one of the
// site's pools), pool_not_found, pool_exhausted (fewer than size SNRs
// left; the pool is unchanged).
func (db *DB) GrantLease(ctx context.Context, site, pool string, size int64, ttl time.Duration, lim LeaseLimits, actor string) (Lease, error) {
	return db.grantLease(ctx, site, "", true, pool, size, ttl, lim, actor)
}

// GrantAskedLease is GrantLease for a site's own request, with the
// request id the site wrote to its ledger before asking (store.LeaseAsk):
// a request with an id HQ has seen (the site lost the answer and asks
// again) is answered with that id's lease, changing nothing; else the
// oldest lease an operator granted the site of the pool that still waits
// for it (Lease.Waiting) is claimed for the id; else a block is granted
// and the id kept with it. Without an id (a site of a version before
// migration 0022) every request is granted a block. Unlike GrantLease's,
// the leases it grants never wait. Errors: GrantLease's; invalid_input
// (request_id: longer than 64 bytes or not printable ASCII); conflict
// (request_id) when the id's lease is of another pool, or was returned or
// has expired since (the site asks with a new id), or when a request with
// the id is being granted.
func (db *DB) GrantAskedLease(ctx context.Context, site, requestID, pool string, size int64, ttl time.Duration, lim LeaseLimits, actor string) (Lease, error) {
	if len(requestID) > 64 || strings.IndexFunc(requestID, func(r rune) bool { return r < '!' || r > '~' }) >= 0 {
		return Lease{}, tacerr.Field(tacerr.InvalidInput, "request_id", "must be at most 64 printable ASCII characters without spaces")
	}
	return db.grantLease(ctx, site, requestID, false, pool, size, ttl, lim, actor)
}

// grantLease is GrantLease (byOperator) and GrantAskedLease (requestID "":
// no id).
func (db *DB) grantLease(ctx context.Context, site, requestID string, byOperator bool, pool string, size int64, ttl time.Duration, lim LeaseLimits, actor string) (Lease, error) {
	switch {
	case size < 1 || size > imei.SNRsPerTAC:
		return Lease{}, tacerr.Field(tacerr.InvalidInput, "size", "a lease holds 1 to 1000000 SNRs, not %d", size)
	case lim.MaxSize > 0 && size > lim.MaxSize:
		return Lease{}, tacerr.Field(tacerr.InvalidInput, "size", "%d SNRs is more than headquarters leases at once (hq.lease.max_size: %d)", size, lim.MaxSize)
	case ttl <= 0:
		return Lease{}, tacerr.Field(tacerr.InvalidInput, "ttl", "a lease's lifetime must be positive")
	case lim.MaxTTL > 0 && ttl > lim.MaxTTL:
		return Lease{}, tacerr.Field(tacerr.InvalidInput, "ttl", "a lifetime of %s is longer than headquarters grants (hq.lease.max_ttl: %s)", ttl, lim.MaxTTL)
	}
	var l Lease
	err := db.InTx(ctx, func(tx *Tx) error {
		st, err := siteByName(txQuerier{tx}, site)
		if err != nil {
			return err
		}
		if !slices.Contains(st.Pools, pool) {
			return tacerr.Field(tacerr.Forbidden, "pool", "site %s may not lease from pool %q (its pools: %s); `tacline site enroll --pools` sets them", site, pool, strings.Join(st.Pools, ", "))
		}
		if requestID != "" {
			var seen []leaseRow
			if err := tx.sel(&seen, tx.rebind(sqlSelectLeases+` WHERE l.site = ? AND l.request_id = ?`), site, requestID); err != nil {
				return translate(err, "look up the lease of a request")
			}
			if len(seen) > 0 {
				r := seen[0]
				switch {
				case r.Pool != pool:
					return tacerr.Field(tacerr.Conflict, "request_id", "request %s of site %s was granted lease %d of pool %s, not of pool %s: ask with a new request id", requestID, site, r.ID, r.Pool, pool)
				case r.ReturnedAt.Valid || !tx.Now().Before(micros(r.ExpiresAt)):
					return tacerr.Field(tacerr.Conflict, "request_id", "request %s of site %s was granted lease %d, which is returned or expired since: ask with a new request id", requestID, site, r.ID)
				}
				l = r.lease()
				return nil
			}
		}
		// Lock the pool's row: grants of one pool serialise here, on
		// both databases.
		var head struct {
			ID     int64 `db:"id"`
			TAC    int64 `db:"tac"`
			SNREnd int64 `db:"snr_end"`
			Next   int64 `db:"next_snr"`
		}
		err = tx.get(&head, tx.rebind(`UPDATE pools SET next_snr = next_snr WHERE name = ? RETURNING id, tac, snr_end, next_snr`), pool)
		if noRows(err) {
			return tacerr.Field(tacerr.PoolNotFound, "pool", "pool %q does not exist", pool)
		}
		if err != nil {
			return translate(err, "lock pool")
		}
		now := tx.Now().Truncate(time.Microsecond)
		if requestID != "" {
			// A lease an operator granted waits for the site's next request.
			var waiting []leaseRow
			if err := tx.sel(&waiting, tx.rebind(sqlSelectLeases+` WHERE l.site = ? AND l.pool_id = ? AND l.by_operator = 1 AND l.request_id IS NULL
				AND l.returned_at IS NULL AND l.expires_at > ? ORDER BY l.id LIMIT 1`), site, head.ID, now.UnixMicro()); err != nil {
				return translate(err, "look up a waiting lease")
			}
			if len(waiting) > 0 {
				res, err := tx.exec(tx.rebind(`UPDATE leases SET request_id = ? WHERE id = ? AND request_id IS NULL`), requestID, waiting[0].ID)
				if isDuplicate(err) {
					return tacerr.Field(tacerr.Conflict, "request_id", "request %s of site %s is being granted by another call: ask again", requestID, site)
				}
				if err != nil {
					return translate(err, "claim a waiting lease")
				}
				if err := oneRow(res, "claim lease %d", waiting[0].ID); err != nil {
					return err
				}
				l = waiting[0].lease()
				l.Waiting = false
				return nil
			}
		}
		if lim.MaxHeld > 0 {
			var held int
			if err := tx.get(&held, tx.rebind(`SELECT COUNT(*) FROM leases WHERE site = ? AND pool_id = ? AND returned_at IS NULL AND expires_at > ?`),
				site, head.ID, now.UnixMicro()); err != nil {
				return translate(err, "count held leases")
			}
			if held >= lim.MaxHeld {
				return tacerr.Field(tacerr.Conflict, "site", "site %s holds %d leases of pool %s, the most headquarters grants (hq.lease.max_held: %d); it releases one first", site, held, pool, lim.MaxHeld)
			}
		}
		start, end, parent, err := tx.takeLeaseBlock(site, head.ID, head.SNREnd, head.Next, size)
		if err != nil {
			return err
		}
		if start < 0 {
			return tacerr.Field(tacerr.PoolExhausted, "size", "pool %s has %d SNRs left, fewer than the %d asked for", pool, head.SNREnd+1-head.Next, size)
		}
		l = Lease{Site: site, Pool: pool, TAC: uint32(head.TAC), SNRStart: uint32(start), SNREnd: uint32(end),
			GrantedAt: now, ExpiresAt: now.Add(ttl), ReletOf: parent.Int64}
		ask := sql.NullString{String: requestID, Valid: requestID != ""}
		op := 0
		if byOperator {
			op = 1
		}
		l.Waiting = byOperator
		if err := tx.queryRowx(tx.rebind(`INSERT INTO leases (site, pool_id, tac, snr_start, snr_end, granted_at, expires_at, relet_of, request_id, by_operator)
			VALUES (?,?,?,?,?,?,?,?,?,?) RETURNING id`), site, head.ID, head.TAC, start, end,
			now.UnixMicro(), l.ExpiresAt.UnixMicro(), parent, ask, op).Scan(&l.ID); err != nil {
			if isDuplicate(err) {
				return tacerr.Field(tacerr.Conflict, "request_id", "request %s of site %s is being granted by another call: ask again", requestID, site)
			}
			return translate(err, "record lease")
		}
		attrs := map[string]string{"site": site, "lease": strconv.FormatInt(l.ID, 10), "snr_start": pad6(l.SNRStart),
			"snr_end": pad6(l.SNREnd), "expires_at": l.ExpiresAt.Format(time.RFC3339)}
		if parent.Valid {
			attrs["relet_of"] = strconv.FormatInt(parent.Int64, 10)
		}
		tx.Emit(Event{Type: EventLeaseGranted, Actor: actor, Pool: pool, TAC: imei.FormatTAC(l.TAC), Attrs: attrs})
		return nil
	})
	return l, err
}

// takeLeaseBlock takes the SNRs of a new lease of site in the pool whose
// row the caller locked: from the oldest returned lease of another site
// with handed-back SNRs not yet leased again (at most size of them), else
// size SNRs from the high-water mark next. It returns the block's first
// and last SNR and the returned lease it was cut from (start < 0: the pool
// has fewer than size SNRs left and nothing was taken).
func (tx *Tx) takeLeaseBlock(site string, poolID, snrEnd, next, size int64) (start, end int64, parent sql.NullInt64, err error) {
	var back struct {
		ID   int64 `db:"id"`
		Next int64 `db:"relet_next"`
		End  int64 `db:"snr_end"`
	}
	err = tx.get(&back, tx.rebind(`SELECT id, relet_next, snr_end FROM leases
		WHERE pool_id = ? AND relet_next IS NOT NULL AND relet_next <= snr_end AND site <> ? ORDER BY id LIMIT 1`), poolID, site)
	switch {
	case err == nil:
		n := min(size, back.End+1-back.Next)
		res, err := tx.exec(tx.rebind(`UPDATE leases SET relet_next = ? WHERE id = ? AND relet_next = ?`), back.Next+n, back.ID, back.Next)
		if err != nil {
			return 0, 0, parent, translate(err, "re-lease returned SNRs")
		}
		if err := oneRow(res, "re-lease SNRs of lease %d", back.ID); err != nil {
			return 0, 0, parent, err
		}
		return back.Next, back.Next + n - 1, sql.NullInt64{Int64: back.ID, Valid: true}, nil
	case !noRows(err):
		return 0, 0, parent, translate(err, "find returned SNRs")
	}
	if next+size > snrEnd+1 {
		return -1, -1, parent, nil
	}
	res, err := tx.exec(tx.rebind(`UPDATE pools SET next_snr = ? WHERE id = ? AND next_snr = ?`), next+size, poolID, next)
	if err != nil {
		return 0, 0, parent, translate(err, "claim lease SNRs")
	}
	if err := oneRow(res, "claim lease SNRs of pool %d", poolID); err != nil {
		return 0, 0, parent, err
	}
	return next, next + size - 1, parent, nil
}

func poolByName(q querier, name string) (PoolStats, error) {
	var r poolRow
	if err := q.Get(&r, q.Rebind(sqlSelectPools+` WHERE name = ?`), name); err != nil {
		if noRows(err) {
			return PoolStats{}, tacerr.Field(tacerr.PoolNotFound, "pool", "pool %q does not exist", name)
		}
		return PoolStats{}, translate(err, "look up pool")
	}
	return r.stats(), nil
}

// Leases returns the leases of site (every site's when site is empty) in
// grant order, each with its SNRs' fate at HQ.
func (db *DB) Leases(ctx context.Context, site string) ([]LeaseStats, error) {
	var out []LeaseStats
	err := db.readTx(ctx, func(tx *Tx) error {
		ls, err := leasesOf(txQuerier{tx}, site)
		if err != nil {
			return err
		}
		for _, l := range ls {
			st := LeaseStats{Lease: l.lease()}
			c, unused, err := tx.leaseUsage(l)
			if err != nil {
				return err
			}
			st.Bound, st.Voided, st.Revoked, st.Unused = c.Bound, c.Voided, c.Revoked, unused
			st.ForcedVoided = l.ForcedVoided
			out = append(out, st)
		}
		return nil
	})
	return out, err
}

func leasesOf(q querier, site string) ([]leaseRow, error) {
	var rows []leaseRow
	var err error
	if site == "" {
		err = q.Select(&rows, sqlSelectLeases+` ORDER BY l.id`)
	} else {
		err = q.Select(&rows, q.Rebind(sqlSelectLeases+` WHERE l.site = ? ORDER BY l.id`), site)
	}
	if err != nil {
		return nil, translate(err, "list leases")
	}
	return rows, nil
}

// RequestLeaseReturn records that an operator asks the site to release
// lease id and emits lease.return_requested. The site sees the request in
// its status (Lease.ReturnRequestedAt), releases the lease in its own
// ledger and ships the release with its proof in its next sync
// (ApplySiteEvents): the SNRs it never reserved then go back to the pool.
// Asking again changes nothing. Errors: not_found, invalid_state (returned
// already).
func (db *DB) RequestLeaseReturn(ctx context.Context, id int64, actor string) error {
	return db.InTx(ctx, func(tx *Tx) error {
		r, err := tx.leaseByID(id)
		if err != nil {
			return err
		}
		if r.ReturnRequestedAt.Valid {
			return nil
		}
		res, err := tx.exec(tx.rebind(`UPDATE leases SET return_requested_at = ? WHERE id = ? AND return_requested_at IS NULL`), tx.Now().UnixMicro(), id)
		if err != nil {
			return translate(err, "request lease return")
		}
		if err := oneRow(res, "request the return of lease %d", id); err != nil {
			return err
		}
		tx.Emit(Event{Type: EventLeaseReturnRequested, Actor: actor, Pool: r.Pool, TAC: imei.FormatTAC(uint32(r.TAC)),
			Attrs: map[string]string{"site": r.Site, "lease": strconv.FormatInt(id, 10)}})
		return nil
	})
}

// leaseByID reads lease id (locking nothing), refusing a returned one.
// Errors: not_found, invalid_state (returned already).
func (tx *Tx) leaseByID(id int64) (leaseRow, error) {
	var r leaseRow
	if err := tx.get(&r, tx.rebind(sqlSelectLeases+` WHERE l.id = ?`), id); err != nil {
		if noRows(err) {
			return r, tacerr.Field(tacerr.NotFound, "lease", "lease %d does not exist; `tacline lease list` shows them", id)
		}
		return r, translate(err, "look up lease")
	}
	if r.ReturnedAt.Valid {
		return r, tacerr.Field(tacerr.InvalidState, "lease", "lease %d was returned at %s", id, micros(r.ReturnedAt.Int64).Format(time.RFC3339))
	}
	return r, nil
}

// endLease marks lease r returned at now, handing the SNRs from
// releasedFrom (when valid) back to the pool for re-leasing, and emits
// lease.returned with attrs.
func (tx *Tx) endLease(r leaseRow, releasedFrom sql.NullInt64, now time.Time, actor string, attrs map[string]string) error {
	res, err := tx.exec(tx.rebind(`UPDATE leases SET returned_at = ?, released_from = ?, relet_next = ? WHERE id = ? AND returned_at IS NULL`),
		now.UnixMicro(), releasedFrom, releasedFrom, r.ID)
	if err != nil {
		return translate(err, "return lease")
	}
	if err := oneRow(res, "return lease %d", r.ID); err != nil {
		return err
	}
	attrs["site"], attrs["lease"] = r.Site, strconv.FormatInt(r.ID, 10)
	tx.Emit(Event{Type: EventLeaseReturned, Time: now, Actor: actor, Pool: r.Pool, TAC: imei.FormatTAC(uint32(r.TAC)), Attrs: attrs})
	return nil
}

func fmtLeaseReturn(id int64) string { return "lease-return:" + strconv.FormatInt(id, 10) }

// insertSiteReservation records the reservation HQ keeps for rows it
// writes on a site's behalf (a site's device, the unused SNRs of a
// returned lease), so that every imeis row has one (Check's rule).
func (tx *Tx) insertSiteReservation(requestID string, poolID int64, caller, deviceSerial string, devices, perDevice int, now time.Time) (int64, error) {
	var id int64
	err := tx.queryRowx(tx.rebind(`INSERT INTO reservations (request_id, request_hash, pool_id, caller, kind, device_serial, devices, per_device, created_at)
		VALUES (?,?,?,?,'provision',?,?,?,?) RETURNING id`), requestID, []byte(requestID), poolID, caller, deviceSerial, devices, perDevice,
		now.UnixMicro()).Scan(&id)
	if err != nil {
		return 0, translate(err, "record site reservation")
	}
	return id, nil
}

// SiteDevice is a device a site bound, as HQ recorded it.
type SiteDevice struct {
	Site         string
	DeviceSerial string
	CertSerial   string
	State        string
	IMEIs        []imei.IMEI // slot order
}

// SiteDevices calls fn for every device HQ recorded for a site (bound,
// then possibly revoked or voided), ordered by site and HQ reservation;
// the rows are read in one snapshot. An error from fn stops the walk and is
// returned.
func (db *DB) SiteDevices(ctx context.Context, fn func(SiteDevice) error) error {
	return db.readTx(ctx, func(tx *Tx) error {
		rows, err := tx.queryx(`SELECT r.caller, i.device_serial, i.cert_serial, i.state, i.imei14, i.reservation_id FROM imeis i
			JOIN reservations r ON r.id = i.reservation_id
			WHERE r.caller LIKE 'site:%' AND i.device_serial <> '' ORDER BY r.caller, i.reservation_id, i.slot`)
		if err != nil {
			return translate(err, "read site devices")
		}
		defer rows.Close()
		var cur SiteDevice
		var curRes int64 = -1
		for rows.Next() {
			var caller, dev, cert, state string
			var v, res int64
			if err := rows.Scan(&caller, &dev, &cert, &state, &v, &res); err != nil {
				return translate(err, "read site devices")
			}
			if res != curRes && curRes >= 0 {
				if err := fn(cur); err != nil {
					return err
				}
			}
			if res != curRes {
				cur, curRes = SiteDevice{Site: caller[len("site:"):], DeviceSerial: dev, CertSerial: cert, State: state}, res
			}
			m, err := imei.FromUint64(uint64(v))
			if err != nil {
				return tacerr.Wrap(tacerr.LedgerInvariant, err, "ledger row %d", v)
			}
			cur.IMEIs = append(cur.IMEIs, m)
		}
		if err := rows.Err(); err != nil {
			return translate(err, "read site devices")
		}
		if curRes >= 0 {
			return fn(cur)
		}
		return nil
	})
}

// splitList splits a comma-separated column ("" is none).
func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
