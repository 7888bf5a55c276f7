// Package provisioner holds tacline's use cases: provision a device (IMEIs
// and certificate at once), pre-allocate IMEIs and bind them later, void,
// reissue and revoke, and crash recovery.
//
// Every certificate is issued in boulder's order: the intent (certificate
// serial, notBefore, issuer, device public key, IMEIs) is committed to the
// ledger first, together with the IMEI reservation; then the certificate is
// built, linted and signed once in the HSM; then one transaction marks the
// IMEIs BOUND and records the certificate, the audit event and the register
// outbox row. A request id answers the same way however often it is
// replayed; a replay after a crash between intent and completion signs
// exactly the TBS certificate the intent fixed. An intent left pending longer
// than the configured timeout is abandoned by the recovery loop: its IMEIs
// are voided (reason "abandoned"), never reused.
//
// The package receives crypto.Signers (inside issuance.Issuer) and never
// imports the hsm package.
package provisioner

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tacline/tacline/catalog"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/policy"
	"github.com/tacline/tacline/provisioner/issuance"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// Config builds a Service.
type Config struct {
	DB *store.DB
	// Issuers by key id (hex SKID); Active names the one new certificates
	// are issued by. Older issuers complete intents recorded under them.
	// They are the initial set: SetIssuers replaces it while serving.
	Issuers map[string]*issuance.Issuer
	Active  string
	// Manufacturer is the subject O of device certificates.
	Manufacturer string
	CSRRules     policy.CSRRules
	// IntentTimeout: a provisioning intent still pending after it is
	// abandoned and its IMEIs voided (default 5 minutes).
	IntentTimeout time.Duration
	// PreallocTimeout: pre-allocated IMEIs never bound after it are voided
	// (0: never).
	PreallocTimeout time.Duration
	// Probe checks the HSM for readiness (a probe signature); nil: none.
	Probe func(ctx context.Context) error
	// SiteLeases: this ledger is a factory site's (docs/sites.md). A pool a
	// station names that is not a pool of this ledger is an HQ pool: the
	// site allocates from its oldest unexpired lease of it with SNRs left
	// (store.HeldLeasePool), and answers lease_exhausted when none is left.
	SiteLeases bool
	// SiteReady, in site mode, refuses allocation from leases until
	// headquarters confirmed the site's ledger current (site.Site.Ready);
	// nil: always ready.
	SiteReady func() error
	// OnKeyReuse is called when a device key is refused as reused.
	OnKeyReuse func()
	// OnSign observes each HSM signature's duration.
	OnSign func(time.Duration)
	// OnUpstreamFailure counts failures of an upstream CA (step-ca) by
	// reason: unreachable, refused, timeout, server_error, mismatch,
	// revoke_failed.
	OnUpstreamFailure func(reason string)
	Now               func() time.Time
	Rand              io.Reader
	Log               *slog.Logger
}

// Service runs the use cases. It is safe for concurrent use.
type Service struct {
	cfg Config
	db  *store.DB

	// issuers is the current issuer set; SetIssuers swaps it atomically.
	issuers atomic.Pointer[issuerSet]

	mu      sync.Mutex
	cache   map[string]cachedMeta  // pool name -> metadata, refreshed every metaTTL
	loading map[string]*metaFlight // pool name -> the load in flight
	// chains caches each issuer's chain PEM (*issuance.Issuer -> string),
	// shared by every response.
	chains sync.Map
}

// issuerSet is an immutable set of issuers with the active one's key id.
type issuerSet struct {
	byKeyID map[string]*issuance.Issuer
	active  string
}

func newIssuerSet(issuers map[string]*issuance.Issuer, active string) (*issuerSet, error) {
	if issuers[active] == nil {
		return nil, tacerr.New(tacerr.InvalidConfig, "no active device issuer %q: run `tacline ca init`", active)
	}
	m := make(map[string]*issuance.Issuer, len(issuers))
	for k, v := range issuers {
		m[k] = v
	}
	return &issuerSet{byKeyID: m, active: active}, nil
}

type cachedMeta struct {
	pool    store.PoolStats
	tac     catalog.TAC
	fetched time.Time
}

// New checks cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.DB == nil {
		return nil, tacerr.New(tacerr.Internal, "provisioner needs a ledger")
	}
	set, err := newIssuerSet(cfg.Issuers, cfg.Active)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(cfg.Manufacturer) == "" {
		return nil, tacerr.Field(tacerr.InvalidConfig, "manufacturer", "is required")
	}
	if len(cfg.CSRRules.Curves) == 0 && !cfg.CSRRules.AllowEd25519 {
		cfg.CSRRules = policy.DefaultCSRRules()
	}
	if cfg.IntentTimeout == 0 {
		cfg.IntentTimeout = 5 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, db: cfg.DB, cache: map[string]cachedMeta{}, loading: map[string]*metaFlight{}}
	s.issuers.Store(set)
	return s, nil
}

// SetIssuers replaces the issuer set (by key id) and the active issuer's
// key id at once: requests that start afterwards record their intent under
// the new active issuer; requests in flight complete with the issuer their
// intent recorded, which must therefore stay in the set (keep every issuer
// that was ever loaded). The maps are copied.
func (s *Service) SetIssuers(issuers map[string]*issuance.Issuer, active string) error {
	set, err := newIssuerSet(issuers, active)
	if err != nil {
		return err
	}
	s.issuers.Store(set)
	return nil
}

// issuer returns the issuer with a key id, nil if it is not loaded.
func (s *Service) issuer(keyID string) *issuance.Issuer { return s.issuers.Load().byKeyID[keyID] }

// activeKeyID is the key id new intents are recorded under.
func (s *Service) activeKeyID() string { return s.issuers.Load().active }

// SetSignObserver installs the observer of HSM signature durations (the
// server's metric). Call it before serving.
func (s *Service) SetSignObserver(observe func(time.Duration)) { s.cfg.OnSign = observe }

// SetUpstreamObserver installs the counter of upstream CA failures (the
// server's alert metric). Call it before serving.
func (s *Service) SetUpstreamObserver(observe func(reason string)) { s.cfg.OnUpstreamFailure = observe }

func (s *Service) upstreamAlert(reason string) {
	if s.cfg.OnUpstreamFailure != nil {
		s.cfg.OnUpstreamFailure(reason)
	}
}

// upstreamFailure is an error of an upstream CA (package stepca's Failure).
type upstreamFailure interface {
	error
	MayHaveSigned() bool
	FailureReason() string
}

// upstreamFailed handles a failed signature at an upstream CA so the ledger
// stays consistent: unreachable (nothing signed) leaves the intent pending
// for a replay or recovery; a refusal abandons it and voids its IMEIs at
// once; an outcome where the CA may have signed (timeout, server error, a
// certificate other than the linted one) first revokes the intent's serial
// there, then abandons it, or, if the revocation fails too, leaves both to
// recovery. Other errors pass through.
func (s *Service) upstreamFailed(ctx context.Context, is *store.Issuance, err error) error {
	var f upstreamFailure
	if !errors.As(err, &f) {
		return err
	}
	s.upstreamAlert(f.FailureReason())
	if !tacerr.Is(err, tacerr.UpstreamRefused) {
		return err
	}
	note := "upstream CA " + f.FailureReason() + ": " + f.Error()
	if f.MayHaveSigned() {
		iss := s.issuer(is.IssuerKeyID)
		if rerr := iss.RevokeUpstream(ctx, is.CertSerial, f.FailureReason()); rerr != nil {
			s.upstreamAlert("revoke_failed")
			return tacerr.Wrap(tacerr.Unavailable, err, "the upstream CA failed on serial %s and revoking it there failed too (%v): recovery revokes it and abandons the intent", is.CertSerial, rerr)
		}
		note += "; serial " + is.CertSerial + " revoked at the upstream CA"
	}
	if _, aerr := s.abandon(ctx, is, note); aerr != nil && !tacerr.Is(aerr, tacerr.Conflict) {
		s.cfg.Log.Error("could not abandon an intent the upstream CA refused; recovery will", "request_id", is.RequestID, "err", aerr.Error())
	}
	s.cfg.Log.Warn("upstream CA refused a certificate; intent abandoned, IMEIs voided", "request_id", is.RequestID,
		"device_serial", is.DeviceSerial, "cert_serial", is.CertSerial, "reason", f.FailureReason(), "err", f.Error())
	return err
}

// SetKeyReuseObserver installs the counter of refused reused device keys.
func (s *Service) SetKeyReuseObserver(observe func()) { s.cfg.OnKeyReuse = observe }

// ActiveIssuer returns the issuer new certificates are signed by.
func (s *Service) ActiveIssuer() *issuance.Issuer {
	set := s.issuers.Load()
	return set.byKeyID[set.active]
}

// ActiveKeyID returns the key id (hex subjectKeyIdentifier) of the issuer
// new certificates are signed by.
func (s *Service) ActiveKeyID() string { return s.activeKeyID() }

func checkRequestID(id string) error {
	if id == "" || len(id) > 128 || strings.ContainsAny(id, "\x00\r\n") {
		return tacerr.Field(tacerr.InvalidInput, "request_id", "must be 1 to 128 printable characters, unique per request")
	}
	return nil
}

// requestHash identifies a request's content for idempotency.
func requestHash(kind string, fields ...string) []byte {
	h := sha256.New()
	var n [4]byte
	for _, f := range append([]string{kind}, fields...) {
		binary.BigEndian.PutUint32(n[:], uint32(len(f)))
		h.Write(n[:])
		h.Write([]byte(f))
	}
	return h.Sum(nil)
}

func csrDigest(csr []byte) string {
	d := sha256.Sum256(csr)
	return string(d[:])
}

// metaTTL is how long a pool's metadata and its TAC stay cached.
const metaTTL = 5 * time.Second

// meta returns a pool's metadata and its TAC, cached for metaTTL (pool
// ranges never change; approvals change rarely). When the entry is missing
// or expired, one caller reads the ledger and every other caller for that
// pool waits for its answer (metaFlight): requests in flight when an entry
// expires make one load between them, not one each.
func (s *Service) meta(ctx context.Context, pool string) (cachedMeta, error) {
	m, err := s.localMeta(ctx, pool)
	if tacerr.Is(err, tacerr.PoolNotFound) && s.cfg.SiteLeases {
		// An HQ pool: resolved on every request (a lease runs dry or
		// expires), never cached.
		if s.cfg.SiteReady != nil {
			if err := s.cfg.SiteReady(); err != nil {
				return cachedMeta{}, err
			}
		}
		p, err := s.db.HeldLeasePool(ctx, pool, s.cfg.Now())
		if err != nil {
			return cachedMeta{}, err
		}
		t, err := s.db.TAC(ctx, p.TAC)
		if err != nil {
			return cachedMeta{}, err
		}
		return cachedMeta{pool: p, tac: t, fetched: s.cfg.Now()}, nil
	}
	return m, err
}

// metaFlight is one ledger read of a pool's metadata that callers wait for.
type metaFlight struct {
	done    chan struct{}
	waiting int // callers waiting for it (under Service.mu)
	m       cachedMeta
	err     error
}

// localMeta returns a local pool's cached metadata, loading it (once for
// all concurrent callers) when missing or expired.
func (s *Service) localMeta(ctx context.Context, pool string) (cachedMeta, error) {
	for {
		s.mu.Lock()
		m, ok := s.cache[pool]
		if ok && s.cfg.Now().Sub(m.fetched) < metaTTL {
			s.mu.Unlock()
			return m, nil
		}
		f := s.loading[pool]
		if f == nil {
			// The error stands if the load panics: its waiters are let go
			// with it, never with an empty record.
			f = &metaFlight{done: make(chan struct{}), err: tacerr.New(tacerr.Internal, "pool %s: the load of its record failed", pool)}
			s.loading[pool] = f
			s.mu.Unlock()
			defer func() {
				s.mu.Lock()
				delete(s.loading, pool)
				if f.err == nil {
					s.cache[pool] = f.m
				}
				s.mu.Unlock()
				close(f.done)
			}()
			f.m, f.err = loadMeta(ctx, s.db, pool, s.cfg.Now)
			return f.m, f.err
		}
		f.waiting++
		s.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return cachedMeta{}, tacerr.Wrap(tacerr.Unavailable, ctx.Err(), "pool %s", pool)
		}
		// The loader's own request ended (cancelled or timed out) before
		// its read did: that is no answer for this one, which loads again.
		if f.err != nil && ctx.Err() == nil && (errors.Is(f.err, context.Canceled) || errors.Is(f.err, context.DeadlineExceeded)) {
			continue
		}
		return f.m, f.err
	}
}

// loadMeta reads a local pool and its TAC from the ledger.
var loadMeta = func(ctx context.Context, db *store.DB, pool string, now func() time.Time) (cachedMeta, error) {
	p, err := db.Pool(ctx, pool)
	if err != nil {
		return cachedMeta{}, err
	}
	t, err := db.TAC(ctx, p.TAC)
	if err != nil {
		return cachedMeta{}, err
	}
	return cachedMeta{pool: p, tac: t, fetched: now()}, nil
}

// stationMemoKey keys a request's stationMemo in its context.
type stationMemoKey struct{}

// stationMemo holds the station record read first in one request, and the
// API's own check of the station when the use case authenticates it
// (WithStationCheck).
type stationMemo struct {
	rec     store.StationRecord
	ok      bool
	check   func(Station) error
	judged  bool  // admitStation gave its verdict (WithStationCheck)
	verdict error // that verdict: nil (admitted), unauthorized, forbidden, or the check's error
}

// WithStationMemo returns a context in which the first read of the calling
// station's record is reused by the later reads of the same request: the API
// authenticates the station (Station), then the use case authorises it with
// the same record, one ledger read instead of two. Every request still reads
// the record, so `tacline station disable` takes effect on the next request.
// The context must belong to one request.
func WithStationMemo(ctx context.Context) context.Context {
	return context.WithValue(ctx, stationMemoKey{}, &stationMemo{})
}

// WithStationCheck is WithStationMemo for a request whose use case
// authenticates the station itself, in its first ledger read (Provision
// reads the station with its request check: one read instead of two):
// check is the API's own check of the enrolled, enabled station (its
// certificate is the station's current one), run on the record before the
// use case answers anything else. The API answers the verdict first
// (StationVerdict); when the request ends without one (an error before the
// use case's read, a ledger that could not say, or a Provisioner that does
// not read the station), the API authenticates the station itself.
func WithStationCheck(ctx context.Context, check func(Station) error) context.Context {
	return context.WithValue(ctx, stationMemoKey{}, &stationMemo{check: check})
}

// StationVerdict returns the verdict the use case gave on the calling
// station in ctx's request (WithStationCheck): judged is false when it gave
// none; err is nil when the station is enrolled, enabled and accepted by
// the check, else the refusal.
func StationVerdict(ctx context.Context) (judged bool, err error) {
	m := memoOf(ctx)
	if m == nil || m.check == nil {
		return false, nil
	}
	return m.judged, m.verdict
}

func memoOf(ctx context.Context) *stationMemo {
	m, _ := ctx.Value(stationMemoKey{}).(*stationMemo)
	return m
}

// stationRecord reads a station's record, through the request's memo if any.
func (s *Service) stationRecord(ctx context.Context, id string) (store.StationRecord, error) {
	m := memoOf(ctx)
	if m != nil && m.ok && m.rec.ID == id {
		return m.rec, nil
	}
	st, err := s.db.Station(ctx, id)
	if err == nil && m != nil {
		m.rec, m.ok = st, true
	}
	return st, err
}

// station returns the enabled station behind an actor.
func (s *Service) station(ctx context.Context, a Actor) (store.StationRecord, error) {
	if a.Station == "" {
		return store.StationRecord{}, tacerr.New(tacerr.Forbidden, "only a station may do this")
	}
	st, err := s.stationRecord(ctx, a.Station)
	return s.admitStation(ctx, a, st, err)
}

// admitStation is the verdict on a station's record (or on the error of its
// read): not enrolled, disabled, or refused by the API's check
// (WithStationCheck).
func (s *Service) admitStation(ctx context.Context, a Actor, st store.StationRecord, err error) (store.StationRecord, error) {
	if err != nil && !tacerr.Is(err, tacerr.NotFound) {
		// The ledger could not say (unavailable, retryable): not a
		// verdict on the station.
		return st, err
	}
	verdict := err
	switch {
	case err != nil:
		verdict = tacerr.Wrap(tacerr.Unauthorized, err, "station %s is not enrolled", a.Station)
	case !st.DisabledAt.IsZero():
		verdict = tacerr.New(tacerr.Forbidden, "station %s is disabled", a.Station)
	}
	if m := memoOf(ctx); m != nil && m.check != nil {
		if verdict == nil {
			verdict = m.check(stationOf(st))
		}
		m.judged, m.verdict = true, verdict
	}
	return st, verdict
}

// stationRequestCheck reads the calling station's record and the request's
// checks in one statement (the memo's record, when the request read it
// already, wins over the one read here) and admits the station.
func (s *Service) stationRequestCheck(ctx context.Context, a Actor, requestID, serial string, spkiHash []byte) (store.StationRecord, store.RequestCheck, error) {
	if a.Station == "" {
		return store.StationRecord{}, store.RequestCheck{}, tacerr.New(tacerr.Forbidden, "only a station may do this")
	}
	c, err := s.db.StationRequestCheckOf(ctx, a.Station, requestID, serial, spkiHash)
	if err != nil {
		return store.StationRecord{}, store.RequestCheck{}, err
	}
	st, serr := c.Station, c.StationErr
	if m := memoOf(ctx); m != nil {
		if m.ok && m.rec.ID == a.Station {
			st, serr = m.rec, nil
		} else if serr == nil {
			m.rec, m.ok = st, true
		}
	}
	st, serr = s.admitStation(ctx, a, st, serr)
	return st, c.RequestCheck, serr
}

func stationOf(st store.StationRecord) Station {
	return Station{ID: st.ID, Factory: st.Factory, Line: st.Line, Pools: st.Pools, CertSerial: st.CertSerial,
		EnrolledAt: st.EnrolledAt, Disabled: !st.DisabledAt.IsZero(), DisabledAt: st.DisabledAt, Description: st.Description}
}

// Station returns an enrolled station (for authentication on every request).
// An unknown station is unauthorized, a disabled one forbidden.
func (s *Service) Station(ctx context.Context, id string) (Station, error) {
	st, err := s.station(ctx, Actor{Station: id})
	if err != nil {
		return Station{}, err
	}
	return stationOf(st), nil
}

// PersonCertificate returns the recorded role certificate of one person
// with serial (lower-case hex), or not_found.
func (s *Service) PersonCertificate(ctx context.Context, serial string) (store.PersonCert, error) {
	return s.db.PersonCertificate(ctx, serial)
}

// choosePool applies the station's authorisation to a pool or product.
func (s *Service) choosePool(ctx context.Context, st store.StationRecord, pool, product string) (cachedMeta, error) {
	infos := map[string]policy.PoolInfo{}
	metas := map[string]cachedMeta{}
	for _, name := range st.Pools {
		if pool != "" && name != pool {
			continue
		}
		m, err := s.meta(ctx, name)
		if tacerr.Is(err, tacerr.PoolNotFound) {
			continue
		}
		if err != nil {
			return cachedMeta{}, err
		}
		infos[name] = policy.PoolInfo{Name: name, Product: m.pool.Product, Market: m.pool.Market, Factory: m.pool.Factory}
		metas[name] = m
	}
	info, err := policy.ChoosePool(st.ID, st.Pools, infos, pool, product)
	if err != nil {
		return cachedMeta{}, err
	}
	m := metas[info.Name]
	if err := s.checkApproval(m); err != nil {
		return cachedMeta{}, err
	}
	return m, nil
}

// checkApproval refuses (tac_not_approved) a pool whose TAC has no approval
// for the pool's market valid now: the one check of a device's market
// approval, which every path that certifies a device (Provision and
// Allocate through choosePool, Bind) runs before it reserves or signs
// anything.
func (s *Service) checkApproval(m cachedMeta) error {
	return policy.CheckApproval(m.tac, m.pool.Market, s.cfg.Now())
}

// csrKey is a decoded CSR's key (policy.DecodeCSR): what the request's
// ledger read is keyed by. Its proof of possession is verified apart
// (proofOfPossession), once the cheaper refusals are answered.
type csrKey struct {
	req      *x509.CertificateRequest // its PublicKey is the device's key
	spki     []byte
	spkiHash []byte
}

// proofOfPossession verifies a decoded CSR's signature
// (policy.CheckPossession); a variable so that tests can count the calls.
var proofOfPossession = policy.CheckPossession

// decodeCSR decodes a CSR, applies the CSR rules to its key and returns the
// key's SPKI and its hash, without verifying its signature.
func (s *Service) decodeCSR(csr []byte) (csrKey, error) {
	req, err := policy.DecodeCSR(csr, s.cfg.CSRRules)
	if err != nil {
		return csrKey{}, err
	}
	spki, err := x509.MarshalPKIXPublicKey(req.PublicKey)
	if err != nil {
		return csrKey{}, tacerr.Field(tacerr.CSRInvalid, "csr", "public key cannot be encoded: %v", err)
	}
	h := sha256.Sum256(spki)
	return csrKey{req: req, spki: spki, spkiHash: h[:]}, nil
}

// parseCSR is decodeCSR and the proof of possession.
func (s *Service) parseCSR(csr []byte) (csrKey, error) {
	k, err := s.decodeCSR(csr)
	if err != nil {
		return csrKey{}, err
	}
	if err := proofOfPossession(k.req); err != nil {
		return csrKey{}, err
	}
	return k, nil
}

// newDevice is what a provisioning or bind request learnt in its first
// checks (admitNewDevice): the admitted station, the device's key (its
// proof of possession verified) and the request check's device and key.
type newDevice struct {
	st    store.StationRecord
	key   csrKey
	check store.RequestCheck
}

// admitNewDevice runs the first checks of a request that certifies a new
// device, cheapest refusal first: the CSR is decoded (its key, no
// signature yet); one ledger read gives the station's record, the request
// id's intent, whether the device exists and who owns the key; the
// station's verdict is answered first, then a replay (out non-nil, or its
// error), then the proof of possession. A refused station or a replay
// therefore spends no signature verification: a replay's CSR is, byte for
// byte, the one verified when its intent was recorded (the request hash
// covers it), and a replay was answered whatever the proof gave before.
// A CSR that does not decode is answered as before: the station, then a
// replay (the CSR rules may have changed since), then the CSR's error.
func (s *Service) admitNewDevice(ctx context.Context, a Actor, requestID, serial string, hash, csr []byte) (nd newDevice, out *Issued, err error) {
	k, perr := s.decodeCSR(csr)
	if perr != nil {
		if err := s.stationFirst(ctx, a, nil); err != nil {
			return newDevice{}, nil, err
		}
		if out, err := s.replay(ctx, requestID, hash, a.Station, csr); out != nil || err != nil {
			return newDevice{}, out, err
		}
		return newDevice{}, nil, perr
	}
	st, check, err := s.stationRequestCheck(ctx, a, requestID, serial, k.spkiHash)
	if err != nil {
		return newDevice{}, nil, err
	}
	if out, err := s.replayOf(ctx, check.Issuance, hash, a.Station, csr); out != nil || err != nil {
		return newDevice{}, out, err
	}
	if err := proofOfPossession(k.req); err != nil {
		return newDevice{}, nil, err
	}
	return newDevice{st: st, key: k, check: check}, nil, nil
}

// stationFirst returns the calling station's refusal if it is refused,
// else err: the station's verdict is answered first on every path.
func (s *Service) stationFirst(ctx context.Context, a Actor, err error) error {
	if _, serr := s.station(ctx, a); serr != nil {
		return serr
	}
	return err
}

func (s *Service) keyReused() {
	if s.cfg.OnKeyReuse != nil {
		s.cfg.OnKeyReuse()
	}
}

// countKeyReused counts err if it is key_reused (the ledger refused the
// key's claim with the reservation or intent: another request claimed it
// after this one's key check) and returns it.
func (s *Service) countKeyReused(err error) error {
	if tacerr.Is(err, tacerr.KeyReused) {
		s.keyReused()
	}
	return err
}

// refuseReusedKey fails with key_reused when the key certifies another device.
func (s *Service) refuseReusedKey(ctx context.Context, spkiHash []byte, device string) error {
	owner, err := s.db.DeviceKeyOwner(ctx, spkiHash)
	if err != nil {
		return err
	}
	return s.keyOwnedElsewhere(owner, device)
}

// keyOwnedElsewhere is key_reused when owner (the device a key is bound to,
// "" if none) is another device than device.
func (s *Service) keyOwnedElsewhere(owner, device string) error {
	if owner != "" && owner != device {
		s.keyReused()
		return tacerr.Field(tacerr.KeyReused, "csr", "this public key is already bound to another device: a device key must be unique (key reuse is a cloning signal)")
	}
	return nil
}

// checkCertifiable applies the certificate profile's device checks (serial,
// manufacturer, model, IMEI count) before anything is reserved, so that the
// profile never refuses a device whose IMEIs are already spent.
func (s *Service) checkCertifiable(serial, model string, imeis int) error {
	ims := make([]imei.IMEI, imeis)
	for i := range ims {
		var err error
		if ims[i], err = imei.New(0, uint32(i)); err != nil { // distinct placeholders: the checks read only how many
			return tacerr.Wrap(tacerr.Internal, err, "placeholder IMEI")
		}
	}
	return policy.CheckDevice(policy.Device{Serial: serial, Manufacturer: s.cfg.Manufacturer, Model: model, IMEIs: ims})
}

// intentFix is what a new intent fixes besides the request: the
// certificate serial, notBefore and the issuer.
type intentFix struct {
	serial    *big.Int
	notBefore time.Time
	keyID     string // the active issuer's key id
}

// newIntent is the last check before a new intent reserves anything: the
// device key pub must pass the lints that judge a key alone (a weak key is
// csr_invalid here, not lint_failed from Prepare once its IMEIs are
// reserved), and the active issuer's signer must not be known to be down
// (a signature failed and a probe signature fails too: hsm_unavailable,
// nothing reserved). It then draws a serial and fixes notBefore.
func (s *Service) newIntent(ctx context.Context, pub any) (intentFix, error) {
	keyID := s.activeKeyID()
	iss := s.issuer(keyID)
	if err := iss.CheckDeviceKey(pub); err != nil {
		return intentFix{}, err
	}
	if err := iss.Ready(ctx); err != nil {
		return intentFix{}, err
	}
	serial, err := policy.NewSerial(s.cfg.Rand)
	if err != nil {
		return intentFix{}, tacerr.Wrap(tacerr.Internal, err, "draw certificate serial")
	}
	return intentFix{serial: serial, notBefore: s.cfg.Now().UTC().Truncate(time.Second), keyID: keyID}, nil
}

func serialHex(n *big.Int) string { return hex.EncodeToString(n.Bytes()) }

// Ready reports whether the ledger and the HSM answer.
func (s *Service) Ready(ctx context.Context) error {
	if err := s.db.Ping(ctx); err != nil {
		return err
	}
	if s.cfg.Probe != nil {
		return s.cfg.Probe(ctx)
	}
	return nil
}

// PoolsRemaining returns every pool with its high-water mark and remaining
// serial numbers, without usage counts (store.PoolHeads: no scan of the
// IMEIs), for the metrics scrape.
func (s *Service) PoolsRemaining(ctx context.Context) ([]store.PoolStats, error) {
	return s.db.PoolHeads(ctx)
}

// Pools returns every pool with its utilisation. Stations see their own
// pools, counted alone (store.PoolsNamed: a station starting reads its
// pools' rows, not the whole ledger's).
func (s *Service) Pools(ctx context.Context, a Actor) ([]store.PoolStats, error) {
	if a.Station == "" || a.Has(RoleOperator) || a.Has(RoleAuditor) || a.Has(RoleRegulator) {
		return s.db.Pools(ctx)
	}
	st, err := s.station(ctx, a)
	if err != nil {
		return nil, err
	}
	if !s.cfg.SiteLeases {
		return s.db.PoolsNamed(ctx, st.Pools)
	}
	all, err := s.db.Pools(ctx)
	if err != nil {
		return nil, err
	}
	mine := map[string]bool{}
	for _, p := range st.Pools {
		mine[p] = true
	}
	var out []store.PoolStats
	for _, p := range all {
		if mine[p.Name] {
			out = append(out, p)
		}
	}
	return s.sitePools(ctx, out, all, mine)
}

// sitePools adds to a station's pools, at a site, the HQ pools it names:
// one entry per HQ pool under its HQ name, summing the site's pools of its
// leases (what is left in unexpired ones as free).
func (s *Service) sitePools(ctx context.Context, out, all []store.PoolStats, mine map[string]bool) ([]store.PoolStats, error) {
	held, err := s.db.HeldLeases(ctx)
	if err != nil {
		return nil, err
	}
	byPool := map[string]store.HeldLeaseStats{}
	for _, h := range held {
		byPool[h.Pool.Name] = h
	}
	idx := map[string]int{}
	for _, p := range all {
		h, ok := byPool[p.Name]
		if !ok || !mine[h.HQPool] {
			continue
		}
		if !s.cfg.Now().Before(h.ExpiresAt) {
			p.Free = 0
		}
		i, seen := idx[h.HQPool]
		if !seen {
			// Under the HQ pool's name and range: every lease of it lies
			// inside, and stations check their IMEIs against it.
			p.Name, p.ID, p.SNRStart, p.SNREnd = h.HQPool, 0, h.HQSNRStart, h.HQSNREnd
			idx[h.HQPool] = len(out)
			out = append(out, p)
			continue
		}
		o := &out[i]
		o.Reserved, o.Bound, o.Voided, o.Revoked, o.Free = o.Reserved+p.Reserved, o.Bound+p.Bound, o.Voided+p.Voided, o.Revoked+p.Revoked, o.Free+p.Free
	}
	return out, nil
}

// mayActOn applies the actor's scope to an existing object drawn from pool
// (a device, an IMEI, a reservation): nil, or not_owner naming field.
func (s *Service) mayActOn(ctx context.Context, a Actor, pool, field, what string) error {
	switch a.Scope {
	case ScopeAll:
		return nil
	case ScopeFactory:
		if a.Station == "" {
			break
		}
		st, err := s.station(ctx, a)
		if err != nil {
			return err
		}
		m, err := s.meta(ctx, pool)
		if err != nil {
			return err
		}
		return policy.CheckOwner(policy.StationInfo{ID: st.ID, Factory: st.Factory, Pools: st.Pools},
			policy.PoolInfo{Name: pool, Factory: m.pool.Factory}, field, what)
	}
	return tacerr.Field(tacerr.NotOwner, field, "%s may not act on %s", a.ID, what)
}

// IMEI returns one IMEI's ledger record.
func (s *Service) IMEI(ctx context.Context, a Actor, m imei.IMEI) (store.IMEIRecord, error) {
	rec, err := s.db.LookupIMEI(ctx, m)
	if err != nil {
		return rec, err
	}
	if err := s.mayActOn(ctx, a, rec.Pool, "imei", "IMEI "+m.String()); err != nil {
		return store.IMEIRecord{}, err
	}
	return rec, nil
}

// Device returns a device's record with its IMEIs and current certificate.
func (s *Service) Device(ctx context.Context, a Actor, serial string) (*Device, error) {
	d, err := s.db.Device(ctx, serial)
	if err != nil {
		return nil, err
	}
	if d == nil {
		return nil, tacerr.Field(tacerr.NotFound, "serial", "device %q was never provisioned", serial)
	}
	recs, err := s.db.GroupIMEIs(ctx, d.ReservationID, d.Group)
	if err != nil {
		return nil, err
	}
	out := &Device{Serial: d.Serial, State: d.State, Station: d.Station, IMEIs: store.IMEIsOf(recs), CertSerial: d.CertSerial,
		BoundAt: d.BoundAt, RevokedAt: d.RevokedAt, Reason: d.Reason}
	if len(recs) > 0 {
		out.Pool = recs[0].Pool
	}
	if err := s.mayActOn(ctx, a, out.Pool, "serial", "device "+serial); err != nil {
		return nil, err
	}
	if c, err := s.db.CertificateBySerial(ctx, d.CertSerial); err != nil {
		return nil, err
	} else if c != nil {
		out.CertDER = c.DER
	}
	return out, nil
}
