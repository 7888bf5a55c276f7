package revocation

import (
	"bytes"
	"context"
	"encoding/hex"
	"github.com/tacline/tacline/lifecycle"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// Publisher makes and keeps the issuers' CRLs in the ledger.
type Publisher struct {
	db      *store.DB
	issuers atomic.Pointer[[]Issuer] // replaced whole by SetIssuers
	cfg     Config
	log     *slog.Logger
	now     func() time.Time

	mu   sync.Mutex // one CRL at a time per publisher
	wake chan struct{}

	rmu        sync.Mutex // delegated OCSP responders
	keys       ResponderKeys
	responders map[string]ocspResponder // by issuer key id
}

// NewPublisher returns a publisher for issuers over the ledger db.
func NewPublisher(db *store.DB, issuers []Issuer, cfg Config, log *slog.Logger) (*Publisher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Publisher{db: db, cfg: cfg, log: log, now: db.Now, wake: make(chan struct{}, 1),
		responders: map[string]ocspResponder{}}
	p.SetIssuers(issuers)
	return p, nil
}

// SetIssuers replaces the issuers the publisher signs for (a server that
// loaded a new device issuer); CRLs and OCSP answers in progress finish
// with the set they started with. The slice is copied.
func (p *Publisher) SetIssuers(issuers []Issuer) {
	cp := append([]Issuer(nil), issuers...)
	p.issuers.Store(&cp)
}

// Issuers returns the issuers the publisher signs for. Callers must not
// modify the slice.
func (p *Publisher) Issuers() []Issuer { return *p.issuers.Load() }

// Issuer returns the issuer with a key id.
func (p *Publisher) Issuer(keyID string) (Issuer, bool) {
	for _, is := range p.Issuers() {
		if is.KeyID == keyID {
			return is, true
		}
	}
	return Issuer{}, false
}

// Publish makes, signs and stores a new CRL of one issuer and returns it.
func (p *Publisher) Publish(ctx context.Context, keyID string) (*store.CRLRecord, error) {
	iss, ok := p.Issuer(keyID)
	if !ok {
		return nil, tacerr.Field(tacerr.NotFound, "issuer", "no device issuer with key id %s: see `tacline ca list`", keyID)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.publishLocked(ctx, iss)
}

// publishLocked is Publish, p.mu held.
func (p *Publisher) publishLocked(ctx context.Context, iss Issuer) (*store.CRLRecord, error) {
	keyID := iss.KeyID
	number, err := p.db.NextCRLNumber(ctx, keyID)
	if err != nil {
		return nil, err
	}
	snapshot := p.now()
	this := snapshot.Truncate(time.Second)
	next := this.Add(p.cfg.NextUpdate)
	entries := func(fn func(Entry) error) error {
		return p.db.RevokedCertificates(ctx, keyID, func(serial string, at time.Time, reason string) error {
			return fn(Entry{SerialHex: serial, At: at, Reason: lifecycle.RevokeReason(reason)})
		})
	}
	if iss.Root {
		entries = func(fn func(Entry) error) error {
			revoked, _, err := p.revokedCAs(ctx, iss)
			if err != nil {
				return err
			}
			for _, e := range revoked {
				if err := fn(e); err != nil {
					return err
				}
			}
			return nil
		}
	}
	der, n, err := BuildCRL(iss, number, this, next, entries)
	if err != nil {
		return nil, err
	}
	rec := store.CRLRecord{IssuerKeyID: keyID, Number: number, Revoked: n, ThisUpdate: snapshot.UnixMicro(), NextUpdate: next.UnixMicro(), DER: der}
	saved, err := p.db.SaveCRL(ctx, rec)
	if err != nil {
		return nil, err
	}
	if !saved {
		// Another replica published a newer CRL meanwhile: serve that.
		latest, err := p.db.LatestCRL(ctx, keyID)
		if err != nil || latest == nil {
			return &rec, err
		}
		return latest, nil
	}
	p.log.Info("CRL published", "issuer", keyID, "number", number, "revoked", n, "next_update", next)
	return &rec, nil
}

// CRL returns the current CRL of an issuer, publishing one first when
// there is none or it is past half its life.
func (p *Publisher) CRL(ctx context.Context, keyID string) (*store.CRLRecord, error) {
	iss, ok := p.Issuer(keyID)
	if !ok {
		return nil, tacerr.Field(tacerr.NotFound, "issuer", "no CRL for issuer key id %q: CRLs are named by the device issuer's key id (`tacline ca list`)", keyID)
	}
	rec, err := p.db.LatestCRL(ctx, keyID)
	if err != nil {
		return nil, err
	}
	if rec != nil && !p.halfLife(rec) {
		return rec, nil
	}
	beforeCRLLock()
	p.mu.Lock()
	defer p.mu.Unlock()
	// Requests that found the CRL stale together (the public CRL endpoint
	// at half-life) wait here for one another: the first publishes, the
	// others serve its CRL instead of each signing and numbering one more.
	if rec, err = p.db.LatestCRL(ctx, keyID); err != nil {
		return nil, err
	}
	if rec != nil && !p.halfLife(rec) {
		return rec, nil
	}
	return p.publishLocked(ctx, iss)
}

// beforeCRLLock is called by CRL as it waits to publish (tests).
var beforeCRLLock = func() {}

func (p *Publisher) halfLife(rec *store.CRLRecord) bool {
	mid := rec.ThisUpdate + (rec.NextUpdate-rec.ThisUpdate)/2
	return p.now().UnixMicro() >= mid
}

// stale reports whether an issuer's CRL misses revocations or nears its
// nextUpdate.
func (p *Publisher) stale(ctx context.Context, keyID string, mark store.RevocationMark) (bool, error) {
	rec, err := p.db.LatestCRL(ctx, keyID)
	if err != nil {
		return false, err
	}
	if rec == nil || p.halfLife(rec) {
		return true, nil
	}
	if iss, ok := p.Issuer(keyID); ok && iss.Root {
		revoked, last, err := p.revokedCAs(ctx, iss)
		if err != nil {
			return false, err
		}
		mark = store.RevocationMark{Count: int64(len(revoked)), Last: last}
	}
	return mark.Count != rec.Revoked || (!mark.Last.IsZero() && mark.Last.UnixMicro() > rec.ThisUpdate), nil
}

// Refresh publishes every issuer's CRL that is stale and returns how many
// it published.
func (p *Publisher) Refresh(ctx context.Context) (int, error) {
	marks, err := p.db.RevocationMarks(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, iss := range p.Issuers() {
		st, err := p.stale(ctx, iss.KeyID, marks[iss.KeyID])
		if err != nil {
			return n, err
		}
		if !st {
			continue
		}
		if _, err := p.Publish(ctx, iss.KeyID); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// revokedCAs lists the revoked CA certificates root signed (device
// issuing CAs and station CAs revoked with `tacline ca revoke`) and the
// latest revocation time.
func (p *Publisher) revokedCAs(ctx context.Context, root Issuer) ([]Entry, time.Time, error) {
	recs, err := p.db.Issuers(ctx)
	if err != nil {
		return nil, time.Time{}, err
	}
	var out []Entry
	var last time.Time
	for _, r := range recs {
		if r.RevokedAt.IsZero() {
			continue
		}
		certs, err := ca.ParseChainPEM([]byte(r.CertPEM))
		if err != nil {
			return nil, time.Time{}, tacerr.Wrap(tacerr.LedgerInvariant, err, "certificate of revoked issuer %s", r.Label)
		}
		if !bytes.Equal(certs[0].AuthorityKeyId, root.Cert.SubjectKeyId) || certs[0].CheckSignatureFrom(root.Cert) != nil {
			continue
		}
		out = append(out, Entry{SerialHex: hex.EncodeToString(certs[0].SerialNumber.Bytes()), At: r.RevokedAt, Reason: r.RevokeReason, CA: true})
		if r.RevokedAt.After(last) {
			last = r.RevokedAt
		}
	}
	return out, last, nil
}

// Trigger asks a running publisher to look for revocations now.
func (p *Publisher) Trigger() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Run keeps the CRLs fresh until ctx ends: it looks for revocations every
// Poll (or when triggered), waits Debounce once it sees one, then publishes
// the stale CRLs. Errors are logged and retried at the next poll.
func (p *Publisher) Run(ctx context.Context) {
	t := time.NewTicker(p.cfg.Poll)
	defer t.Stop()
	for {
		marks, err := p.db.RevocationMarks(ctx)
		stale := false
		if err == nil {
			for _, iss := range p.Issuers() {
				var s bool
				if s, err = p.stale(ctx, iss.KeyID, marks[iss.KeyID]); err != nil || s {
					stale = s
					break
				}
			}
		}
		if err == nil && stale {
			select {
			case <-ctx.Done():
				return
			case <-time.After(p.cfg.Debounce):
			}
			_, err = p.Refresh(ctx)
		}
		if err != nil && ctx.Err() == nil {
			p.log.Warn("CRL refresh failed; retrying", "err", err)
		}
		if err := p.RenewResponders(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("OCSP responder renewal failed; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.wake:
		}
	}
}

// WriteAll publishes a fresh CRL of every issuer and writes each to
// dir/<key-id>.crl (DER), atomically. It returns the records written.
func (p *Publisher) WriteAll(ctx context.Context, dir string) ([]*store.CRLRecord, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, tacerr.Field(tacerr.InvalidInput, "output", "cannot create %s: %v", dir, err)
	}
	var out []*store.CRLRecord
	for _, iss := range p.Issuers() {
		rec, err := p.Publish(ctx, iss.KeyID)
		if err != nil {
			return out, err
		}
		path := filepath.Join(dir, iss.KeyID+".crl")
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, rec.DER, 0o644); err != nil {
			return out, tacerr.Field(tacerr.InvalidInput, "output", "write %s: %v", tmp, err)
		}
		if err := os.Rename(tmp, path); err != nil {
			return out, tacerr.Field(tacerr.InvalidInput, "output", "write %s: %v", path, err)
		}
		out = append(out, rec)
	}
	return out, nil
}
