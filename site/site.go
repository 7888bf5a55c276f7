package site

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// HQClient is what a site asks of headquarters (HTTPClient over mutual
// TLS in production).
type HQClient interface {
	Lease(ctx context.Context, req wire.LeaseRequest) (wire.Lease, error)
	Sync(ctx context.Context, req wire.SiteSyncRequest) (wire.SiteSyncResponse, error)
	Status(ctx context.Context) (wire.SiteStatus, error)
}

// PoolPolicy is how a site leases from one HQ pool.
type PoolPolicy struct {
	Pool      string `yaml:"pool" doc:"the HQ pool this site leases from (the name its stations use)"`
	LeaseSize int64  `yaml:"lease_size" doc:"SNRs per lease asked for"`
}

// Config is the `site:` section of a site's configuration.
type Config struct {
	Name string `yaml:"name" doc:"the site's name as enrolled at headquarters; set: this server is a factory site"`
	// HQURL is headquarters' API (https://host:port); CertFile and KeyFile
	// the site's client certificate (`tacline site enroll` at HQ), CAFile
	// the CA that verifies HQ's server certificate.
	HQURL    string       `yaml:"hq_url" doc:"headquarters' API, https://host:port"`
	CertFile string       `yaml:"cert_file" doc:"the site's client certificate (tacline site enroll at headquarters)"`
	KeyFile  string       `yaml:"key_file" doc:"its private key"`
	CAFile   string       `yaml:"ca_file" doc:"CA certificates that verify headquarters' server certificate"`
	Pools    []PoolPolicy `yaml:"pools" doc:"the HQ pools this site leases from"`
	// LowWaterHours: the site asks for the next lease of a pool when what
	// is left of its held leases lasts less than this many hours at the
	// current rate (or when nothing is left).
	LowWaterHours float64 `yaml:"low_water_hours" doc:"ask for the next lease when what is left lasts fewer hours than this at the current rate"`
	// Interval between sync and lease checks (default 2s).
	Interval time.Duration `yaml:"interval" doc:"time between lease checks and syncs (default 2s)"`
	// BatchSize is the most events per sync request (default 200; fewer
	// when they would not fit the sync body limit).
	BatchSize int `yaml:"batch_size" doc:"most events per sync request (default 200)"`
	// WitnessKey is headquarters' witness key (`tacline audit witness-key`
	// at HQ): the site verifies HQ's tlog-cosignature/v1 of each checkpoint
	// with it before keeping the cosigned checkpoint.
	WitnessKey string `yaml:"witness_key" doc:"headquarters' witness key, name+keyid+base64 (tacline audit witness-key at headquarters): verifies HQ's cosignature of this site's checkpoints"`
	// CosignedCheckpoint is the file, outside the ledger database, where
	// the site keeps the newest checkpoint HQ cosigned (besides its
	// ledger); server start-up defaults it to audit.published_checkpoint
	// with ".cosigned" appended.
	CosignedCheckpoint string `yaml:"cosigned_checkpoint" doc:"file outside the database holding the newest checkpoint headquarters cosigned, next to the HSM token (default: audit.published_checkpoint + .cosigned; empty then: the ledger only)"`
}

// ValidateConnection names the first missing connection field.
func (c Config) ValidateConnection() error {
	for _, f := range []struct{ name, v string }{{"site.hq_url", c.HQURL}, {"site.cert_file", c.CertFile},
		{"site.key_file", c.KeyFile}, {"site.ca_file", c.CAFile}} {
		if f.v == "" {
			return tacerr.Field(tacerr.InvalidConfig, f.name, "is required in site mode (site.name is set)")
		}
	}
	if !strings.HasPrefix(c.HQURL, "https://") {
		return tacerr.Field(tacerr.InvalidConfig, "site.hq_url", "%q must be an https:// URL", c.HQURL)
	}
	return nil
}

// Validate names the first wrong field.
func (c Config) Validate() error {
	switch {
	case !store.ValidSiteName(c.Name):
		return tacerr.Field(tacerr.InvalidConfig, "site.name", "%q must be 1-32 lower-case letters, digits or '-'", c.Name)
	case len(c.Pools) == 0:
		return tacerr.Field(tacerr.InvalidConfig, "site.pools", "name at least one HQ pool to lease from")
	case c.LowWaterHours < 0:
		return tacerr.Field(tacerr.InvalidConfig, "site.low_water_hours", "must not be negative")
	case c.WitnessKey == "":
		return tacerr.Field(tacerr.InvalidConfig, "site.witness_key", "is required: headquarters' witness key, which `tacline audit witness-key` prints at headquarters")
	}
	if _, err := audit.ParseCosignatureKey(c.WitnessKey); err != nil {
		return tacerr.Field(tacerr.InvalidConfig, "site.witness_key", "%v", err)
	}
	for i, p := range c.Pools {
		switch {
		case p.Pool == "":
			return tacerr.Field(tacerr.InvalidConfig, fmt.Sprintf("site.pools[%d].pool", i), "names the HQ pool to lease from; it is required")
		case p.LeaseSize < 1 || p.LeaseSize > imei.SNRsPerTAC:
			return tacerr.Field(tacerr.InvalidConfig, fmt.Sprintf("site.pools[%d].lease_size", i), "must be between 1 and 1000000, and at most headquarters' hq.lease.max_size; got %d", p.LeaseSize)
		}
	}
	return nil
}

// Site is a factory site's side: it keeps leases held ahead of need, ships
// its ledger events with its signed checkpoints to HQ, and refuses to issue
// until HQ has confirmed, since its start, that its ledger is current.
//
// Promises: events leave in outbox order, each with its audit leaf and
// inclusion proof, and are marked shipped only after HQ applied them and
// its cosignature verified (HQ skips what it applied before, so a lost
// answer costs a resend, not a duplicate); HQ's cosigned checkpoint is kept
// in the ledger and the file outside it before that. After a start, Ready
// fails with site_not_current until HQ's last verified checkpoint of this
// site is known and this ledger's audit log extends it, and for good when
// the log does not extend HQ's cosigned checkpoint the site holds (a
// ledger restored from an older backup, or another history), whether or
// not HQ is reachable. A lease it releases (ReleaseLeases) is closed for
// allocation before its lease.released is written, and that event follows
// every event of the lease's SNRs below its mark in the outbox.
type Site struct {
	cfg     Config
	db      *store.DB
	log     *audit.Log
	hq      HQClient
	lg      *slog.Logger
	witness *audit.CosignatureVerifier

	mu       sync.Mutex
	verified int64  // HQ's last verified size of this site's log; -1 unknown
	notReady string // why Ready fails; "" when ready
	rate     map[string]*rateMeter

	m struct {
		hoursLeft *prometheus.GaugeVec
		remaining *prometheus.GaugeVec
		lowWater  *prometheus.GaugeVec
		pending   prometheus.GaugeFunc
		synced    prometheus.Counter
		failures  prometheus.Counter
	}
}

// New returns a site over its ledger db and audit log l (which signs the
// checkpoints). reg, when not nil, receives the site metrics.
func New(cfg Config, db *store.DB, l *audit.Log, hq HQClient, reg prometheus.Registerer, lg *slog.Logger) (*Site, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 200
	}
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	s := &Site{cfg: cfg, db: db, log: l, hq: hq, lg: lg, verified: -1, notReady: notConfirmed, rate: map[string]*rateMeter{}}
	s.witness, _ = audit.ParseCosignatureKey(cfg.WitnessKey) // Validate parsed it
	if l.Verifier() == nil {
		return nil, tacerr.New(tacerr.InvalidConfig, "a site's audit log needs its checkpoint key (audit.key_label)")
	}
	s.m.hoursLeft = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tacline_site_lease_hours_left",
		Help: "Hours the SNRs left in held leases of an HQ pool last at the current rate (+Inf when idle)."}, []string{"pool"})
	s.m.remaining = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tacline_site_lease_remaining",
		Help: "SNRs left in held, unexpired leases of an HQ pool."}, []string{"pool"})
	s.m.lowWater = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tacline_site_lease_low_water",
		Help: "1 while an HQ pool's held leases are below site.low_water_hours (alert when it stays 1: HQ does not grant)."}, []string{"pool"})
	s.m.pending = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tacline_site_sync_pending",
		Help: "Ledger events not yet applied at headquarters."}, func() float64 {
		n, err := db.SiteOutboxPending(context.Background())
		if err != nil {
			return math.NaN()
		}
		return float64(n)
	})
	s.m.synced = prometheus.NewCounter(prometheus.CounterOpts{Name: "tacline_site_sync_events_total", Help: "Events applied at headquarters."})
	s.m.failures = prometheus.NewCounter(prometheus.CounterOpts{Name: "tacline_site_sync_failures_total", Help: "Failed sync or lease requests to headquarters."})
	if reg != nil {
		for _, c := range []prometheus.Collector{s.m.hoursLeft, s.m.remaining, s.m.lowWater, s.m.pending, s.m.synced, s.m.failures} {
			if err := reg.Register(c); err != nil {
				return nil, tacerr.Wrap(tacerr.Internal, err, "register site metrics")
			}
		}
	}
	return s, nil
}

// Ready is nil once HQ confirmed the site's ledger current since its
// start, else site_not_current (retryable). The provisioner calls it
// before allocating from a lease.
func (s *Site) Ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.notReady != "" {
		return tacerr.New(tacerr.SiteNotCurrent, "site %s refuses to issue: %s", s.cfg.Name, s.notReady)
	}
	return nil
}

const notConfirmed = "headquarters has not yet confirmed this site's ledger since its start"

// Confirm checks this ledger's audit log against the newest checkpoint of
// it that HQ cosigned and the site holds (CheckCosigned: no HQ needed),
// then asks HQ for its last verified checkpoint of this site: the site is
// ready when its log extends both (HQ saw no more of the log than the
// ledger holds, and the same history). Errors: site_not_current, and
// HQ's (unavailable when it is unreachable: the site stays not ready).
func (s *Site) Confirm(ctx context.Context) error {
	if err := s.CheckCosigned(ctx); err != nil {
		return err
	}
	st, err := s.hq.Status(ctx)
	if err != nil {
		return err
	}
	hqCP := audit.Checkpoint{Size: st.VerifiedSize}
	if b, err := base64.StdEncoding.DecodeString(st.VerifiedRoot); err == nil && len(b) == len(hqCP.Root) {
		copy(hqCP.Root[:], b)
	} else if st.VerifiedSize > 0 {
		return tacerr.New(tacerr.Unavailable, "headquarters' status names size %d without a root hash", st.VerifiedSize)
	}
	stand := audit.Standing{}
	if st.VerifiedSize > 0 {
		if stand, err = audit.StandAgainst(ctx, s.db, hqCP); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.verified = st.VerifiedSize
	switch {
	case stand.Older:
		s.notReady = fmt.Sprintf("headquarters verified %d entries of this site's audit log, this ledger holds %d: it was restored from an older backup; an operator must rebuild it (docs/sites.md)", st.VerifiedSize, stand.HeadSize)
	case stand.Forked:
		s.notReady = fmt.Sprintf("this ledger's audit log at size %d differs from the one headquarters verified: its history was rewritten; an operator must rebuild it (docs/sites.md)", st.VerifiedSize)
	default:
		s.notReady = ""
		return nil
	}
	return tacerr.New(tacerr.SiteNotCurrent, "site %s: %s", s.cfg.Name, s.notReady)
}

// CheckCosigned compares this ledger's audit log with the newest
// checkpoint HQ cosigned that the site holds, in the file outside the
// database (site.cosigned_checkpoint) and in its ledger, each verified
// with the site's checkpoint key and HQ's witness key. When the ledger does
// not extend it (fewer entries: restored from an older backup; another
// root at its size: a rewritten history), or a kept checkpoint does not
// verify, the site refuses to issue (site_not_current, for good: a new
// start does not clear it) whether or not HQ is reachable.
func (s *Site) CheckCosigned(ctx context.Context) error {
	why, err := s.cosignedStanding(ctx)
	if err != nil || why == "" {
		return err
	}
	s.mu.Lock()
	s.notReady = why
	s.mu.Unlock()
	return tacerr.New(tacerr.SiteNotCurrent, "site %s: %s", s.cfg.Name, why)
}

// cosignedStanding returns why the ledger is not current against the
// cosigned checkpoints the site holds, or "".
func (s *Site) cosignedStanding(ctx context.Context) (string, error) {
	var best *audit.Cosigned
	from := ""
	consider := func(msg []byte, where string) string {
		c, err := audit.OpenCosigned(msg, s.log.Verifier(), s.witness)
		if err != nil {
			return fmt.Sprintf("headquarters' cosigned checkpoint in %s does not verify (%v): it was altered, or the site's audit key or site.witness_key changed; an operator must find out which (docs/sites.md)", where, err)
		}
		if best == nil || c.Size > best.Size {
			best, from = &c, where
		}
		return ""
	}
	if path := s.cfg.CosignedCheckpoint; path != "" {
		msg, err := audit.ReadPublished(path)
		if err != nil {
			return "", err
		}
		if msg != nil {
			if why := consider(msg, path); why != "" {
				return why, nil
			}
		}
	}
	kept, err := s.db.Cosigned(ctx, s.cfg.Name)
	if err != nil {
		return "", err
	}
	if kept.Cosigned != "" {
		if why := consider([]byte(kept.Cosigned), "the ledger"); why != "" {
			return why, nil
		}
	}
	if best == nil {
		return "", nil
	}
	st, err := audit.StandAgainst(ctx, s.db, best.Checkpoint)
	if err != nil {
		return "", err
	}
	at := best.Time.Format(time.RFC3339)
	switch {
	case st.Older:
		return fmt.Sprintf("this ledger's audit log holds %d entries, but headquarters cosigned size %d of it at %s (%s): the ledger was restored from an older backup and could issue SNRs again; an operator must rebuild it (docs/sites.md)",
			st.HeadSize, best.Size, at, from), nil
	case st.Forked:
		return fmt.Sprintf("this ledger's audit log at size %d is not the one headquarters cosigned at %s (%s): its history was rewritten; an operator must rebuild it (docs/sites.md)",
			best.Size, at, from), nil
	}
	return "", nil
}

// keepCosigned verifies HQ's cosignature of the checkpoint cp the site
// sent, then keeps the cosigned note in the ledger and in the file outside
// it (when it is newer than what the file holds).
func (s *Site) keepCosigned(ctx context.Context, cp audit.StoredCheckpoint, cosigned string) error {
	c, err := audit.OpenCosigned([]byte(cosigned), s.log.Verifier(), s.witness)
	if err != nil {
		return tacerr.Wrap(tacerr.InvalidConfig, err, "headquarters' answer does not carry its cosignature under site.witness_key")
	}
	if c.Size != cp.Size || c.Root != cp.Root {
		return tacerr.New(tacerr.Unavailable, "headquarters cosigned the checkpoint of size %d, not the one of size %d the site sent", c.Size, cp.Size)
	}
	if err := s.db.RecordCosigned(ctx, s.cfg.Name, store.SiteCheckpoint{Size: c.Size, Hash: c.Root[:], Note: string(cp.Note), Cosigned: cosigned}); err != nil {
		return err
	}
	path := s.cfg.CosignedCheckpoint
	if path == "" {
		return nil
	}
	old, err := audit.ReadPublished(path)
	if err != nil {
		return err
	}
	if old != nil {
		if prev, err := audit.OpenCosigned(old, s.log.Verifier(), s.witness); err == nil && prev.Size >= c.Size {
			return nil
		}
	}
	return audit.WritePublished(path, []byte(cosigned))
}

// SyncOnce ships pending events (at most BatchSize) with a fresh signed
// checkpoint and the consistency proof from HQ's verified size, then marks
// what HQ applied. It returns how many events HQ applied or had applied.
func (s *Site) SyncOnce(ctx context.Context) (int, error) {
	s.mu.Lock()
	verified := s.verified
	s.mu.Unlock()
	if verified < 0 {
		if err := s.Confirm(ctx); err != nil {
			return 0, err
		}
		s.mu.Lock()
		verified = s.verified
		s.mu.Unlock()
	}
	evs, err := s.db.PendingSiteEvents(ctx, 0, s.cfg.BatchSize)
	if err != nil {
		return 0, err
	}
	size, _, err := audit.Head(ctx, s.db)
	if err != nil {
		return 0, err
	}
	if len(evs) == 0 && size == verified {
		return 0, nil
	}
	// The checkpoint is signed after the events were read: it covers them
	// (they were appended to the log in their own transactions).
	cp, err := s.log.Checkpoint(ctx)
	if err != nil {
		return 0, err
	}
	proof, err := audit.ConsistencyProof(ctx, s.db, verified, cp.Size)
	if err != nil {
		return 0, err
	}
	req := wire.SiteSyncRequest{Checkpoint: string(cp.Note), ProofFrom: verified, Proof: EncodeHashes(proof)}
	if req.Events, err = ProveEvents(ctx, s.db, evs, cp.Size); err != nil {
		return 0, err
	}
	// Stay well under the sync body limit (the checkpoint covers every
	// event shipped, so fewer is always right).
	b, err := json.Marshal(req)
	if err != nil {
		return 0, tacerr.Wrap(tacerr.Internal, err, "encode sync request")
	}
	for n := len(b); n > wire.MaxSyncBodyBytes*3/4 && len(req.Events) > 1; {
		last, _ := json.Marshal(req.Events[len(req.Events)-1])
		n -= len(last) + 1
		req.Events = req.Events[:len(req.Events)-1]
	}
	res, err := s.hq.Sync(ctx, req)
	if err != nil {
		// The answer may have been lost after HQ applied the batch: read
		// HQ's verified size again before the next batch.
		s.mu.Lock()
		s.verified = -1
		s.mu.Unlock()
		s.m.failures.Inc()
		return 0, err
	}
	s.mu.Lock()
	s.verified = res.VerifiedSize
	s.mu.Unlock()
	if err := s.keepCosigned(ctx, cp, res.Cosigned); err != nil {
		s.m.failures.Inc()
		return 0, err
	}
	n, err := s.db.MarkSiteEventsShipped(ctx, res.AppliedSeq)
	if err != nil {
		return 0, err
	}
	s.m.synced.Add(float64(n))
	return int(n), nil
}

// ProveEvents returns the wire form of a site's outbox events evs, each
// with its audit leaf from db and the leaf's inclusion proof in the tree of
// size size (the checkpoint the batch is sent with).
func ProveEvents(ctx context.Context, db *store.DB, evs []store.PendingSiteEvent, size int64) ([]wire.SiteEvent, error) {
	idx := make([]int64, len(evs))
	for i, e := range evs {
		if e.LeafIndex < 0 {
			return nil, tacerr.New(tacerr.LedgerInvariant, "site outbox row %d carries no audit leaf index (written by a tacline before 2026-12): ship it with that version before upgrading", e.Seq)
		}
		idx[i] = e.LeafIndex
	}
	leaves, err := db.AuditLeavesAt(ctx, idx)
	if err != nil {
		return nil, err
	}
	proofs, err := audit.InclusionProofs(ctx, db, size, idx)
	if err != nil {
		return nil, err
	}
	out := make([]wire.SiteEvent, len(evs))
	for i, e := range evs {
		out[i] = WireEvent(e)
		out[i].Leaf, out[i].Proof = leaves[e.LeafIndex], EncodeHashes(proofs[i])
	}
	return out, nil
}

// EncodeHashes is the wire form of a proof: standard base64 hashes (an
// empty slice, not nil, for none).
func EncodeHashes(hs []tlog.Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = base64.StdEncoding.EncodeToString(h[:])
	}
	return out
}

// WireEvent is the wire form of an outbox event, without its leaf and
// proof. HQ builds it again from the leaf a shipped event claims
// (store.SiteEventOf) and compares.
func WireEvent(e store.PendingSiteEvent) wire.SiteEvent {
	if e.IMEIs == nil {
		e.IMEIs = []string{} // lease.released names none
	}
	return wire.SiteEvent{Seq: e.Seq, Type: e.Type, Time: e.Time.UTC(), RequestID: e.RequestID, IMEIs: e.IMEIs,
		DeviceSerial: e.DeviceSerial, CertSerial: e.CertSerial, Reason: e.Reason, PreviousCertSerial: e.PreviousCertSerial,
		LeafIndex: e.LeafIndex, Lease: e.Lease, UnusedFrom: e.UnusedFrom}
}

// EnsureLeases checks each configured HQ pool: when what is left of its
// held, unexpired leases lasts less than LowWaterHours at the current
// rate (or nothing is left), or an operator granted it a lease that waits
// at HQ, it asks HQ for the next lease and records it.
func (s *Site) EnsureLeases(ctx context.Context) error {
	st, err := s.hq.Status(ctx)
	return s.ensureLeases(ctx, st, err)
}

// ensureLeases is EnsureLeases with HQ's status read (or hqErr: HQ
// unreachable).
func (s *Site) ensureLeases(ctx context.Context, st wire.SiteStatus, hqErr error) error {
	held, err := s.db.HeldLeases(ctx)
	if err != nil {
		return err
	}
	now := s.db.Now()
	// A lease an operator granted waits at HQ until the site asks: ask
	// for it whether or not the pool runs low. HQ unreachable: only the
	// low pools ask (and fail).
	waiting := map[string]bool{}
	if hqErr == nil {
		for _, l := range st.Leases {
			waiting[l.Pool] = waiting[l.Pool] || l.Waiting
		}
	}
	for _, p := range s.cfg.Pools {
		var remaining, used int64
		for _, h := range held {
			if h.HQPool != p.Pool {
				continue
			}
			used += int64(h.NextSNR) - int64(h.Pool.SNRStart)
			if now.Before(h.ExpiresAt) {
				remaining += h.Free
			}
		}
		s.mu.Lock()
		rm := s.rate[p.Pool]
		if rm == nil {
			rm = &rateMeter{}
			s.rate[p.Pool] = rm
		}
		perHour := rm.observe(now, used)
		s.mu.Unlock()
		hours := math.Inf(1)
		if perHour > 0 {
			hours = float64(remaining) / perHour
		}
		low := remaining == 0 || hours < s.cfg.LowWaterHours
		s.m.remaining.WithLabelValues(p.Pool).Set(float64(remaining))
		s.m.hoursLeft.WithLabelValues(p.Pool).Set(hours)
		s.m.lowWater.WithLabelValues(p.Pool).Set(b2f(low))
		if !low && !waiting[p.Pool] {
			continue
		}
		// The request's id is in the ledger before HQ hears of it: if the
		// answer is lost, the next request carries the same id and HQ
		// answers with the lease it granted, not with another.
		id, err := s.db.LeaseAsk(ctx, p.Pool)
		if err != nil {
			return err
		}
		req := LeaseRequestFor(p)
		req.RequestID = id
		l, err := s.hq.Lease(ctx, req)
		if err != nil {
			s.m.failures.Inc()
			if e, ok := tacerr.As(err); ok && e.Code == tacerr.Conflict && e.Field == "request_id" {
				// HQ will not answer this id with a lease again (returned
				// or expired since): the next request takes a new id.
				if derr := s.db.DropLeaseAsk(ctx, p.Pool, id); derr != nil {
					return fmt.Errorf("%w (and forgetting the request failed: %v)", err, derr)
				}
			}
			return err
		}
		if err := RecordLease(ctx, s.db, s.cfg.Name, l); err != nil {
			return err
		}
		s.lg.Info("lease received", "pool", p.Pool, "lease", l.ID, "snr_start", l.SNRStart, "snr_end", l.SNREnd, "expires_at", l.ExpiresAt)
	}
	return nil
}

// RecordLease records a lease HQ granted in the site's ledger
// (store.RecordHeldLease): from then on stations naming its HQ pool draw
// from it.
func RecordLease(ctx context.Context, db *store.DB, siteName string, l wire.Lease) error {
	tac, err := imei.ParseTAC(l.TAC)
	if err != nil {
		return tacerr.Wrap(tacerr.InvalidInput, err, "lease %d from headquarters: tac", l.ID)
	}
	var lo, hi, plo, phi uint32
	if _, err := fmt.Sscanf(l.SNRStart+" "+l.SNREnd+" "+l.PoolSNRStart+" "+l.PoolSNREnd, "%d %d %d %d", &lo, &hi, &plo, &phi); err != nil {
		return tacerr.Wrap(tacerr.InvalidInput, err, "lease %d from headquarters: SNR ranges", l.ID)
	}
	return db.RecordHeldLease(ctx, store.HeldLease{LeaseID: l.ID, HQPool: l.Pool, HQSNRStart: plo, HQSNREnd: phi, GrantedAt: l.GrantedAt, ExpiresAt: l.ExpiresAt,
		Pool: store.Pool{TAC: tac, SNRStart: lo, SNREnd: hi, Factory: l.Factory, Line: l.Line, Product: l.Product, Market: l.Market}},
		"site:"+siteName)
}

// Run confirms the ledger with HQ, then keeps leases ahead of need and
// ships events every Interval until ctx ends; failures (HQ unreachable)
// are logged and retried.
func (s *Site) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		if err := s.Ready(); err != nil {
			if err := s.Confirm(ctx); err != nil && ctx.Err() == nil {
				s.lg.Warn("site not confirmed by headquarters", "err", err)
			}
		}
		if s.Ready() == nil {
			// One status read serves the release check and the lease check.
			st, stErr := s.hq.Status(ctx)
			if _, err := s.releaseLeases(ctx, st, stErr); err != nil && ctx.Err() == nil {
				s.lg.Warn("lease release check failed", "err", err)
			}
			if err := s.ensureLeases(ctx, st, stErr); err != nil && ctx.Err() == nil {
				s.lg.Warn("lease check failed", "err", err)
			}
			for {
				n, err := s.SyncOnce(ctx)
				if err != nil && ctx.Err() == nil {
					s.lg.Warn("sync failed", "err", err)
				}
				if err != nil || n == 0 {
					break
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// rateMeter estimates SNRs used per hour from successive observations of
// the total used (an exponentially weighted average of the rates between
// observations).
type rateMeter struct {
	at      time.Time
	used    int64
	perHour float64
}

func (r *rateMeter) observe(now time.Time, used int64) float64 {
	if !r.at.IsZero() && now.After(r.at) {
		cur := float64(used-r.used) / now.Sub(r.at).Hours()
		if r.perHour == 0 {
			r.perHour = cur
		} else {
			r.perHour = 0.7*r.perHour + 0.3*cur
		}
	}
	r.at, r.used = now, used
	return r.perHour
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// LeaseRequestFor is the lease request of a pool policy.
func LeaseRequestFor(p PoolPolicy) wire.LeaseRequest {
	return wire.LeaseRequest{Pool: p.Pool, Size: p.LeaseSize}
}

// LocalStatus is a site's own view (`tacline site status` at a site).
type LocalStatus struct {
	Site          string      `json:"site"`
	Leases        []HeldLease `json:"leases"`
	Remaining     int64       `json:"remaining"`      // SNRs left in unexpired leases
	PendingEvents int64       `json:"pending_events"` // not yet applied at HQ
}

// HeldLease is one lease in LocalStatus.
type HeldLease struct {
	Lease     int64     `json:"lease"`
	HQPool    string    `json:"hq_pool"`
	Pool      string    `json:"pool"`
	SNRStart  string    `json:"snr_start"`
	SNREnd    string    `json:"snr_end"`
	Used      int64     `json:"used"`
	Free      int64     `json:"free"`
	ExpiresAt time.Time `json:"expires_at"`
	Expired   bool      `json:"expired"`
	// Released: the site released the lease (lease.released written);
	// Closed: closed for allocation, waiting for reservations in flight.
	Released bool `json:"released,omitempty"`
	Closed   bool `json:"closed,omitempty"`
}

// Local reads a site's own view from its ledger.
func Local(ctx context.Context, db *store.DB, name string) (LocalStatus, error) {
	held, err := db.HeldLeases(ctx)
	if err != nil {
		return LocalStatus{}, err
	}
	st := LocalStatus{Site: name, Leases: []HeldLease{}}
	now := db.Now()
	for _, h := range held {
		expired := !now.Before(h.ExpiresAt)
		st.Leases = append(st.Leases, HeldLease{Lease: h.LeaseID, HQPool: h.HQPool, Pool: h.Pool.Name,
			SNRStart: fmt.Sprintf("%06d", h.Pool.SNRStart), SNREnd: fmt.Sprintf("%06d", h.Pool.SNREnd),
			Used: int64(h.NextSNR) - int64(h.Pool.SNRStart), Free: h.Free, ExpiresAt: h.ExpiresAt, Expired: expired,
			Released: !h.ReleasedAt.IsZero(), Closed: !h.ClosedAt.IsZero() && h.ReleasedAt.IsZero()})
		if !expired {
			st.Remaining += h.Free
		}
	}
	if st.PendingEvents, err = db.SiteOutboxPending(ctx); err != nil {
		return LocalStatus{}, err
	}
	return st, nil
}
