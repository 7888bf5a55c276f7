package site

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// HQ verifies and applies sites' sync batches, grants the leases sites
// ask for, and answers their status.
type HQ struct {
	db       *store.DB
	cosigner note.Signer
	refused  *prometheus.CounterVec
	applied  *prometheus.CounterVec

	// Policy bounds the leases HQ grants (hq.lease; DefaultLeasePolicy
	// when zero).
	Policy LeasePolicy
}

// Authenticate checks that site is enrolled and, when its enrolment names
// a certificate serial, that certSerial (hex) is it: a replaced site
// certificate is refused (unauthorized).
func (h *HQ) Authenticate(ctx context.Context, site, certSerial string) error {
	st, err := h.db.SiteByName(ctx, site)
	if err == nil && st.Verifier == "" {
		// A site's own row of HQ's cosigned checkpoint (store.RecordCosigned)
		// at a site's server, not an enrolment.
		err = tacerr.New(tacerr.NotFound, "site %s has no enrolment", site)
	}
	if tacerr.Is(err, tacerr.NotFound) {
		return tacerr.New(tacerr.Unauthorized, "site %s is not enrolled at this headquarters: `tacline site enroll`", site)
	}
	if err != nil {
		return err
	}
	if st.CertSerial != "" && !strings.EqualFold(st.CertSerial, certSerial) {
		return tacerr.New(tacerr.Unauthorized, "site %s presented certificate %s, not its enrolled certificate %s", site, certSerial, st.CertSerial)
	}
	return nil
}

// GrantLease leases a block of at most req.Size SNRs of req.Pool to site
// for the policy's default lifetime (a site asking for its next block),
// within the policy's bounds, or the lease an operator granted it that
// waits; with req.RequestID, a request HQ has seen is answered with the
// lease it had for it (store.GrantAskedLease). Errors: GrantAskedLease's.
func (h *HQ) GrantLease(ctx context.Context, site string, req wire.LeaseRequest) (wire.Lease, error) {
	pol := h.policy()
	l, err := h.db.GrantAskedLease(ctx, site, req.RequestID, req.Pool, req.Size, pol.DefaultTTL, pol.Limits(), store.SiteCaller(site))
	if err != nil {
		return wire.Lease{}, err
	}
	p, err := h.db.Pool(ctx, req.Pool)
	if err != nil {
		return wire.Lease{}, err
	}
	w := WireLease(store.LeaseStats{Lease: l, Unused: l.Size()})
	w.Factory, w.Line, w.Product, w.Market = p.Factory, p.Line, p.Product, p.Market
	w.PoolSNRStart, w.PoolSNREnd = fmt.Sprintf("%06d", p.SNRStart), fmt.Sprintf("%06d", p.SNREnd)
	return w, nil
}

func (h *HQ) policy() LeasePolicy {
	if h.Policy == (LeasePolicy{}) {
		return DefaultLeasePolicy()
	}
	return h.Policy
}

// NewHQ returns HQ's side over its ledger. cosigner cosigns the site
// checkpoints HQ verified (an audit.Cosigner over HQ's Ed25519 witness key
// in its HSM: C2SP tlog-cosignature/v1); without one Sync answers
// witness_missing before any check, applying nothing. reg, when not
// nil, receives the metrics tacline_site_sync_refused_total{site} and
// tacline_site_events_applied_total{site}.
func NewHQ(db *store.DB, cosigner note.Signer, reg prometheus.Registerer) (*HQ, error) {
	h := &HQ{db: db, cosigner: cosigner,
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tacline_site_sync_refused_total",
			Help: "Site sync batches refused: a checkpoint inconsistent with the last verified one, or an IMEI outside the site's leases (alert on any)."}, []string{"site"}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tacline_site_events_applied_total",
			Help: "Site ledger events applied at HQ."}, []string{"site"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{h.refused, h.applied} {
			if err := reg.Register(c); err != nil {
				return nil, tacerr.Wrap(tacerr.Internal, err, "register site metrics")
			}
		}
	}
	return h, nil
}

// Sync verifies and applies one batch of site (the caller has
// authenticated the site). Errors: not_found (site), invalid_input (a
// malformed event or proof, no checkpoint), lease_violation (refused: bad signature,
// inconsistent checkpoint, IMEI outside the site's leases),
// witness_missing (this headquarters cosigns nothing: no witness key).
func (h *HQ) Sync(ctx context.Context, site string, req wire.SiteSyncRequest) (wire.SiteSyncResponse, error) {
	if h.cosigner == nil {
		// Nothing of the batch could be answered: say so before verifying it.
		return wire.SiteSyncResponse{}, tacerr.New(tacerr.WitnessMissing, "this headquarters has no witness key (audit.witness_key_label) and cosigns no site checkpoint, so it applies no site's events: an operator at headquarters creates it with `tacline audit witness-key --generate` and restarts tacline")
	}
	st, err := h.db.SiteByName(ctx, site)
	if err != nil {
		return wire.SiteSyncResponse{}, err
	}
	events, err := decodeEvents(req.Events)
	if err != nil {
		return wire.SiteSyncResponse{}, err
	}
	cp, v, err := h.verify(st, req)
	if err == nil {
		err = checkInclusion(site, cp, req.Events)
	}
	if err != nil {
		return wire.SiteSyncResponse{}, h.refuse(ctx, site, err)
	}
	cosigned, err := h.cosign(cp, v)
	if err != nil {
		return wire.SiteSyncResponse{}, err
	}
	res, err := h.db.ApplySiteEvents(ctx, site, events, store.SiteCheckpoint{Size: cp.Size, Hash: cp.Root[:], Note: string(cp.Note),
		Cosigned: string(cosigned), From: &store.SiteCheckpoint{Size: st.Checkpoint.Size, Hash: st.Checkpoint.Hash}}, "site:"+site)
	if err != nil {
		return wire.SiteSyncResponse{}, h.refuse(ctx, site, err)
	}
	h.applied.WithLabelValues(site).Add(float64(res.Applied))
	return wire.SiteSyncResponse{Applied: res.Applied, Skipped: res.Skipped, AppliedSeq: res.AppliedSeq, VerifiedSize: cp.Size,
		Cosigned: string(cosigned)}, nil
}

// refuse records a refused batch (lease_violation) and passes err on.
func (h *HQ) refuse(ctx context.Context, site string, err error) error {
	if !tacerr.Is(err, tacerr.LeaseViolation) {
		return err
	}
	h.refused.WithLabelValues(site).Inc()
	if rerr := h.db.RecordSiteRefusal(ctx, site, err.Error()); rerr != nil {
		return fmt.Errorf("%w (and recording the refusal failed: %v)", err, rerr)
	}
	return err
}

// verify opens the site's checkpoint under its enrolled key and checks
// that it extends the checkpoint HQ verified last.
func (h *HQ) verify(st store.SiteState, req wire.SiteSyncRequest) (audit.Checkpoint, note.Verifier, error) {
	if strings.TrimSpace(req.Checkpoint) == "" {
		// A malformed request, not a checkpoint that fails: the site is
		// not marked inconsistent for it.
		return audit.Checkpoint{}, nil, tacerr.Field(tacerr.InvalidInput, "checkpoint", "is required: the site's signed checkpoint of the log its events are in")
	}
	v, err := audit.ParseVerifierKey(st.Verifier)
	if err != nil {
		return audit.Checkpoint{}, nil, tacerr.Wrap(tacerr.LedgerInvariant, err, "site %s's enrolled verifier key", st.Name)
	}
	cp, err := audit.OpenCheckpoint([]byte(req.Checkpoint), v)
	if err != nil {
		return audit.Checkpoint{}, nil, withField(tacerr.Wrap(tacerr.LeaseViolation, err, "site %s's checkpoint", st.Name), "checkpoint")
	}
	prev := st.Checkpoint
	switch {
	case cp.Size < prev.Size:
		return cp, nil, tacerr.Field(tacerr.LeaseViolation, "checkpoint", "site %s's checkpoint of size %d is older than the size %d HQ verified: was the site restored from a backup?", st.Name, cp.Size, prev.Size)
	}
	if req.ProofFrom != prev.Size {
		// Not a refusal: the site lost an answer and proves from an older
		// size; it reads HQ's status and sends again.
		return cp, nil, tacerr.Field(tacerr.Conflict, "proof_from", "the proof starts at size %d, but headquarters verified size %d of site %s's log last: read the status and send again", req.ProofFrom, prev.Size, st.Name)
	}
	if prev.Size == 0 {
		return cp, v, nil
	}
	var old tlog.Hash
	copy(old[:], prev.Hash)
	proof := make(tlog.TreeProof, len(req.Proof))
	for i, s := range req.Proof {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) != tlog.HashSize {
			return cp, nil, tacerr.Field(tacerr.InvalidInput, fmt.Sprintf("proof[%d]", i), "is not the base64 of a 32-byte hash")
		}
		copy(proof[i][:], b)
	}
	if err := tlog.CheckTree(proof, cp.Size, cp.Root, prev.Size, old); err != nil {
		return cp, nil, withField(tacerr.Wrap(tacerr.LeaseViolation, err, "site %s's checkpoint of size %d is not consistent with the checkpoint of size %d HQ verified: its log was rewritten", st.Name, cp.Size, prev.Size), "proof")
	}
	return cp, v, nil
}

// checkInclusion refuses the batch (lease_violation) unless every event's
// leaf is in the tree of the checkpoint, by its inclusion proof, at
// strictly increasing indexes, and the leaf is that very event: the site
// event HQ builds from the leaf (store.SiteEventOf, for every event type a
// site ships) equals the event shipped. So each event HQ applies is one the
// site's signed, append-only log holds, once.
func checkInclusion(site string, cp audit.Checkpoint, evs []wire.SiteEvent) error {
	last := int64(-1)
	for i, e := range evs {
		f := fmt.Sprintf("events[%d]", i)
		if e.LeafIndex <= last || e.LeafIndex >= cp.Size {
			return tacerr.Field(tacerr.LeaseViolation, f+".leaf_index", "site %s's event %d claims audit leaf %d, which is not after leaf %d and below the checkpoint's size %d: the batch is refused",
				site, e.Seq, e.LeafIndex, last, cp.Size)
		}
		last = e.LeafIndex
		proof := make(tlog.RecordProof, len(e.Proof))
		for k, p := range e.Proof {
			b, err := base64.StdEncoding.DecodeString(p)
			if err != nil || len(b) != tlog.HashSize {
				return tacerr.Field(tacerr.InvalidInput, fmt.Sprintf("%s.proof[%d]", f, k), "is not the base64 of a 32-byte hash")
			}
			copy(proof[k][:], b)
		}
		if err := tlog.CheckRecord(proof, cp.Size, cp.Root, e.LeafIndex, tlog.RecordHash(e.Leaf)); err != nil {
			return tacerr.Field(tacerr.LeaseViolation, f+".proof", "site %s's event %d: leaf %d is not in its audit log of size %d (the inclusion proof fails): the batch is refused",
				site, e.Seq, e.LeafIndex, cp.Size)
		}
		le, err := audit.DecodeEvent(e.Leaf)
		if err != nil {
			return tacerr.Field(tacerr.LeaseViolation, f+".leaf", "site %s's audit leaf %d does not decode (%v): the batch is refused", site, e.LeafIndex, err)
		}
		want, ok := store.SiteEventOf(le)
		if !ok {
			return tacerr.Field(tacerr.LeaseViolation, f+".leaf", "site %s's audit leaf %d is a %s event, which sites do not ship: the batch is refused", site, e.LeafIndex, le.Type)
		}
		want.Seq, want.LeafIndex = e.Seq, e.LeafIndex
		if diff := eventDiff(WireEvent(want), e); diff != "" {
			return tacerr.Field(tacerr.LeaseViolation, f+"."+diff, "site %s's event %d differs from its audit leaf %d in %s: the batch is refused", site, e.Seq, e.LeafIndex, diff)
		}
	}
	return nil
}

// eventDiff names the first JSON field (in name order) in which got
// differs from want, leaf and proof aside; "" when they are equal.
func eventDiff(want, got wire.SiteEvent) string {
	want.Leaf, want.Proof, got.Leaf, got.Proof = nil, nil, nil, nil
	var a, b map[string]json.RawMessage
	ja, _ := json.Marshal(want)
	jb, _ := json.Marshal(got)
	if bytes.Equal(ja, jb) {
		return ""
	}
	_ = json.Unmarshal(ja, &a)
	_ = json.Unmarshal(jb, &b)
	keys := slices.Sorted(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		if !bytes.Equal(a[k], b[k]) {
			return k
		}
	}
	return "event"
}

// cosign adds HQ's cosignature line to the site's signed checkpoint (Sync
// has refused every batch when HQ has no witness key).
func (h *HQ) cosign(cp audit.Checkpoint, v note.Verifier) ([]byte, error) {
	n, err := note.Open(cp.Note, note.VerifierList(v))
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Internal, err, "reopen site checkpoint to cosign")
	}
	// The site's signature is kept and HQ's added after it.
	n.UnverifiedSigs = nil
	msg, err := note.Sign(n, h.cosigner)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.HSMUnavailable, err, "cosign site checkpoint")
	}
	return msg, nil
}

func decodeEvents(in []wire.SiteEvent) ([]store.SiteEvent, error) {
	out := make([]store.SiteEvent, len(in))
	for i, e := range in {
		if len(e.IMEIs) > imei.MaxPerDevice {
			// Every site event is about one device's IMEIs (one per SIM
			// slot); a longer list is malformed, and on SQLite a list of
			// tens of thousands would exceed a statement's parameters.
			return nil, tacerr.Field(tacerr.InvalidInput, fmt.Sprintf("events[%d].imeis", i), "names %d IMEIs; an event names one device's, at most %d", len(e.IMEIs), imei.MaxPerDevice)
		}
		ims := make([]imei.IMEI, len(e.IMEIs))
		for k, s := range e.IMEIs {
			m, err := imei.Parse(s)
			if err != nil {
				return nil, withField(tacerr.Wrap(tacerr.InvalidIMEI, err, "events[%d].imeis[%d]", i, k), fmt.Sprintf("events[%d].imeis[%d]", i, k))
			}
			ims[k] = m
		}
		out[i] = store.SiteEvent{Seq: e.Seq, Type: e.Type, Time: e.Time.UTC().Truncate(time.Microsecond), RequestID: e.RequestID,
			IMEIs: ims, DeviceSerial: e.DeviceSerial, CertSerial: e.CertSerial, Reason: e.Reason, PreviousCertSerial: e.PreviousCertSerial,
			Lease: e.Lease, UnusedFrom: -1, LeafIndex: e.LeafIndex}
		if e.UnusedFrom != "" {
			snr, err := strconv.ParseUint(e.UnusedFrom, 10, 32)
			if err != nil || len(e.UnusedFrom) != 6 {
				return nil, tacerr.Field(tacerr.InvalidInput, fmt.Sprintf("events[%d].unused_from", i), "%q is not a 6-digit SNR", e.UnusedFrom)
			}
			out[i].UnusedFrom = int64(snr)
		}
	}
	return out, nil
}

// Status returns HQ's view of site.
func (h *HQ) Status(ctx context.Context, site string) (wire.SiteStatus, error) {
	st, err := h.db.SiteByName(ctx, site)
	if err != nil {
		return wire.SiteStatus{}, err
	}
	ls, err := h.db.Leases(ctx, site)
	if err != nil {
		return wire.SiteStatus{}, err
	}
	return siteStatus(st, ls, h.db.Now()), nil
}

// Statuses returns HQ's view of every site.
func (h *HQ) Statuses(ctx context.Context) ([]wire.SiteStatus, error) {
	sites, err := h.db.Sites(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]wire.SiteStatus, 0, len(sites))
	for _, st := range sites {
		ls, err := h.db.Leases(ctx, st.Name)
		if err != nil {
			return nil, err
		}
		out = append(out, siteStatus(st, ls, h.db.Now()))
	}
	return out, nil
}

func siteStatus(st store.SiteState, ls []store.LeaseStats, now time.Time) wire.SiteStatus {
	s := wire.SiteStatus{Site: st.Name, Leases: []wire.Lease{}, AppliedSeq: st.AppliedSeq, VerifiedSize: st.Checkpoint.Size,
		Consistent: st.LastRefusal == "", Refusals: st.Refusals, LastRefusal: st.LastRefusal}
	if len(st.Checkpoint.Hash) == tlog.HashSize {
		s.VerifiedRoot = base64.StdEncoding.EncodeToString(st.Checkpoint.Hash)
	}
	if !st.LastSync.IsZero() {
		t := st.LastSync
		s.LastSync = &t
	}
	for _, l := range ls {
		s.Leases = append(s.Leases, WireLease(l))
		if l.Held(now) {
			s.LeasedSNRs += l.Size()
		}
		s.Bound += l.Bound
		s.Voided += l.Voided
		s.Revoked += l.Revoked
		s.Unused += l.Unused
		s.Released += l.Released
		s.Relet += l.Relet
	}
	return s
}

// WireLease is a lease in its wire form.
func WireLease(l store.LeaseStats) wire.Lease {
	w := wire.Lease{ID: l.ID, Site: l.Site, Pool: l.Pool, TAC: imei.FormatTAC(l.TAC), SNRStart: fmt.Sprintf("%06d", l.SNRStart),
		SNREnd: fmt.Sprintf("%06d", l.SNREnd), GrantedAt: l.GrantedAt, ExpiresAt: l.ExpiresAt, Bound: l.Bound, Voided: l.Voided,
		Revoked: l.Revoked, Unused: l.Unused, ReletOf: l.ReletOf, Released: l.Released, Relet: l.Relet, Waiting: l.Waiting}
	if !l.ReturnedAt.IsZero() {
		t := l.ReturnedAt
		w.ReturnedAt = &t
	}
	if !l.ReturnRequestedAt.IsZero() {
		t := l.ReturnRequestedAt
		w.ReturnRequestedAt = &t
	}
	return w
}

func withField(e *tacerr.Error, field string) *tacerr.Error {
	e.Field = field
	return e
}
