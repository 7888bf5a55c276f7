package provisioner

import (
	"bytes"
	"context"
	"crypto/x509"
	"math/big"
	"strconv"
	"time"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/lifecycle"
	"github.com/tacline/tacline/policy"
	"github.com/tacline/tacline/provisioner/issuance"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// AlreadyProvisionedError is device_already_provisioned with the device's
// existing IMEIs (the API returns them to the station).
type AlreadyProvisionedError struct {
	Err   *tacerr.Error
	IMEIs []imei.IMEI
}

func (e *AlreadyProvisionedError) Error() string { return e.Err.Error() }
func (e *AlreadyProvisionedError) Unwrap() error { return e.Err }

// ExistingIMEIs returns the device's IMEIs.
func (e *AlreadyProvisionedError) ExistingIMEIs() []imei.IMEI { return e.IMEIs }

// alreadyProvisioned is device_already_provisioned, with the recorded
// device's IMEIs when the actor may read them (a device of another factory
// stays opaque). A serial claimed by a request still pending (no device
// recorded: its signature or binding failed) has no IMEIs to give: those
// reserved for it are voided if that request is abandoned, and IMEIs of an
// earlier abandoned attempt carry the serial too, so the IMEIs come from
// the device's record, never from the IMEIs that name the serial.
func (s *Service) alreadyProvisioned(ctx context.Context, a Actor, serial string) error {
	d, err := s.db.Device(ctx, serial)
	if err == nil && d == nil {
		return &AlreadyProvisionedError{Err: tacerr.Field(tacerr.DeviceAlreadyProvisioned, "device_serial",
			"device %q is being provisioned by another request that has not completed (its signature or binding failed): replay that request with its request id to complete it, or provision with a new request id once recovery has abandoned it (after %s); nothing was reserved", serial, s.cfg.IntentTimeout)}
	}
	e := &AlreadyProvisionedError{Err: tacerr.Field(tacerr.DeviceAlreadyProvisioned, "device_serial",
		"device %q is already provisioned; rework goes through reissue", serial)}
	if err != nil {
		return e
	}
	if recs, err := s.db.GroupIMEIs(ctx, d.ReservationID, d.Group); err == nil && len(recs) > 0 && s.mayActOn(ctx, a, recs[0].Pool, "device_serial", "device "+serial) == nil {
		e.IMEIs = store.IMEIsOf(recs)
	}
	return e
}

// Provision reserves a device's IMEIs, records the issuance intent, signs its
// certificate in the HSM and binds the IMEIs, as described in the package
// comment. A replay of the request id returns the same IMEIs and certificate.
func (s *Service) Provision(ctx context.Context, in ProvisionInput) (*Issued, error) {
	err := checkRequestID(in.RequestID)
	if err == nil {
		err = policy.CheckDeviceSerial(in.DeviceSerial)
	}
	if err != nil {
		return nil, s.stationFirst(ctx, in.Actor, err)
	}
	hash := requestHash("provision", in.DeviceSerial, in.Pool, in.Product, strconv.Itoa(in.IMEICount), csrDigest(in.CSR))
	// One read for the station (authenticated first), the replay and the
	// new-device checks, before the proof of possession.
	nd, out, err := s.admitNewDevice(ctx, in.Actor, in.RequestID, in.DeviceSerial, hash, in.CSR)
	if out != nil || err != nil {
		return out, err
	}
	st, check := nd.st, nd.check
	m, err := s.choosePool(ctx, st, in.Pool, in.Product)
	if err != nil {
		return nil, err
	}
	count, err := policy.IMEICount(m.tac, in.IMEICount)
	if err != nil {
		return nil, err
	}
	if err := s.checkCertifiable(in.DeviceSerial, m.tac.ModelName, count); err != nil {
		return nil, err
	}
	fix, err := s.newDeviceIntent(ctx, in.Actor, in.DeviceSerial, check.DeviceExists, check.KeyOwner, nd.key.req.PublicKey)
	if err != nil {
		return nil, err
	}
	intent := &store.Issuance{RequestID: in.RequestID, Kind: "provision", RequestHash: hash, Station: st.ID,
		DeviceSerial: in.DeviceSerial, CertSerial: serialHex(fix.serial), NotBefore: fix.notBefore, IssuerKeyID: fix.keyID,
		PublicKey: nd.key.spki, SPKIHash: nd.key.spkiHash}
	res, err := s.db.Reserve(ctx, store.ReserveRequest{RequestID: in.RequestID, RequestHash: hash, Pool: m.pool.Name,
		Caller: st.ID, Kind: store.KindProvision, DeviceSerial: in.DeviceSerial, PerDevice: count, Issuance: intent})
	for try := 0; try < 3 && s.cfg.SiteLeases && (tacerr.Is(err, tacerr.PoolExhausted) || tacerr.Is(err, tacerr.PoolNotFound)); try++ {
		// A site's lease ran dry under concurrent requests, or was closed
		// by its release (its pool renamed): the next one.
		if m, err = s.choosePool(ctx, st, in.Pool, in.Product); err != nil {
			return nil, err
		}
		res, err = s.db.Reserve(ctx, store.ReserveRequest{RequestID: in.RequestID, RequestHash: hash, Pool: m.pool.Name,
			Caller: st.ID, Kind: store.KindProvision, DeviceSerial: in.DeviceSerial, PerDevice: count, Issuance: intent})
	}
	if err != nil {
		if tacerr.Is(err, tacerr.DeviceAlreadyProvisioned) {
			return nil, s.alreadyProvisioned(ctx, in.Actor, in.DeviceSerial)
		}
		return nil, s.countKeyReused(err)
	}
	if res.Replayed {
		// A concurrent duplicate of this request won the race: answer as a replay.
		return s.replayOrWait(ctx, in.RequestID, hash, in.Actor.Station, in.CSR)
	}
	intent.ReservationID = res.ID
	return s.complete(ctx, intent, res.Devices[0], nd.key.req.PublicKey, fix.serial, in.CSR)
}

// newDeviceIntent refuses a device already provisioned or a key bound to
// another device (exists and owner: the request check's answers,
// store.RequestCheck), then fixes the intent for the device key pub
// (newIntent).
func (s *Service) newDeviceIntent(ctx context.Context, a Actor, device string, exists bool, owner string, pub any) (intentFix, error) {
	if exists {
		return intentFix{}, s.alreadyProvisioned(ctx, a, device)
	}
	if err := s.keyOwnedElsewhere(owner, device); err != nil {
		return intentFix{}, err
	}
	return s.newIntent(ctx, pub)
}

// replay answers a request id seen before: the stored result if issued
// (Replayed), the completion of its intent if pending (not Replayed: the
// first success), an error if abandoned or if the request's content
// differs. It returns (nil, nil) for a new request id. csr is the request's
// CSR (the same as the first time: it is part of the request's hash), which
// an upstream CA signs.
func (s *Service) replay(ctx context.Context, requestID string, hash []byte, caller string, csr []byte) (*Issued, error) {
	is, err := s.db.IssuanceByRequestID(ctx, requestID)
	if err != nil {
		return nil, err
	}
	return s.replayOf(ctx, is, hash, caller, csr)
}

// replayOf is replay once the request id's intent was read (nil: a new
// request id, answered (nil, nil)).
func (s *Service) replayOf(ctx context.Context, is *store.Issuance, hash []byte, caller string, csr []byte) (*Issued, error) {
	if is == nil {
		return nil, nil
	}
	requestID := is.RequestID
	// A request id belongs to the caller that used it first: another caller
	// learns nothing of it.
	if !bytes.Equal(is.RequestHash, hash) || is.Station != caller {
		return nil, tacerr.Field(tacerr.RequestConflict, "request_id", "request id %q was already used for a different request; use a new request id", requestID)
	}
	switch is.State {
	case store.IssuanceIssued:
		return s.issuedResult(ctx, is)
	case store.IssuanceAbandoned:
		return nil, s.abandonedError(ctx, is)
	}
	pub, err := x509.ParsePKIXPublicKey(is.PublicKey)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Internal, err, "intent %s holds an unreadable public key", requestID)
	}
	recs, err := s.db.GroupIMEIs(ctx, is.ReservationID, is.Group)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if r.State == store.StateVoided {
			return s.abandonVoided(ctx, is, hash, caller, csr)
		}
	}
	serial, ok := new(big.Int).SetString(is.CertSerial, 16)
	if !ok {
		return nil, tacerr.New(tacerr.Internal, "intent %s holds a bad serial", requestID)
	}
	if iss := s.issuer(is.IssuerKeyID); iss != nil && iss.Upstream() && s.cfg.Now().Sub(is.NotBefore) > s.cfg.IntentTimeout {
		// Recovery may be revoking this serial at the upstream CA: never sign it again.
		return nil, tacerr.Field(tacerr.InvalidState, "request_id",
			"request %q is older than %s and is being abandoned; provision the device again with a new request id", requestID, s.cfg.IntentTimeout)
	}
	// Completing a pending intent is the request's first success (the API
	// answers 201), whatever failed before; only an issued intent is a
	// replay (200), and complete answers so when a twin completed it first.
	return s.complete(ctx, is, store.IMEIsOf(recs), pub, serial, csr)
}

// abandonVoided answers the replay of a pending intent whose device group
// holds a voided IMEI: such an IMEI is never bound, so nothing is signed
// for it. The intent is abandoned first, as store's Tx.Void abandons the
// intents of the group it voids; a ledger written before Void did so (or an
// IMEI voided by other means) can still hold such an intent. If the intent
// changed meanwhile (a twin or recovery ended it), the replay is answered as
// the intent now stands.
func (s *Service) abandonVoided(ctx context.Context, is *store.Issuance, hash []byte, caller string, csr []byte) (*Issued, error) {
	err := s.db.Commit(ctx, func(tx *store.Tx) error { return tx.SetIssuanceState(is.RequestID, store.IssuanceAbandoned) })
	if err != nil && !tacerr.Is(err, tacerr.Conflict) {
		return nil, err
	}
	if err == nil {
		s.cfg.Log.Info("replay abandoned an intent whose IMEIs were voided", "request_id", is.RequestID, "kind", is.Kind, "device_serial", is.DeviceSerial)
	}
	latest, err := s.db.IssuanceByRequestID(ctx, is.RequestID)
	if err != nil {
		return nil, err
	}
	if latest == nil || latest.State == store.IssuancePending {
		return nil, tacerr.New(tacerr.Internal, "intent %s is still pending after it was abandoned", is.RequestID)
	}
	return s.replayOf(ctx, latest, hash, caller, csr)
}

// abandonedError answers a request whose intent was abandoned, saying why
// and what became of what the intent held: recovery abandoned it after the
// intent timeout (abandon), or the IMEIs it names were voided while it was
// pending (store's Tx.Void abandons such an intent with them, so that no
// replay signs a certificate for IMEIs that can never be bound).
func (s *Service) abandonedError(ctx context.Context, is *store.Issuance) error {
	recs, err := s.db.GroupIMEIs(ctx, is.ReservationID, is.Group)
	if err != nil {
		return err
	}
	// What became of the intent's IMEIs after the timeout, and what to do
	// once they were voided.
	what, next := "its IMEIs voided; provision the device again", "provision the device again with a new request id"
	switch is.Kind {
	case "bind":
		what, next = "its IMEIs stay pre-allocated; bind them again", "bind another pre-allocated group, or provision the device, with a new request id"
	case "reissue":
		what, next = "the device keeps its certificate; reissue again", "the device was voided and cannot be reissued"
	}
	for _, r := range recs {
		if r.State != store.StateVoided || (r.Reason == string(lifecycle.VoidAbandoned) && is.Kind != "bind") {
			continue // a provision intent's own abandonment voids its IMEIs as abandoned
		}
		return tacerr.Field(tacerr.InvalidState, "request_id",
			"request %q was abandoned: IMEI %s it names was voided (%s) before the request completed, and a voided IMEI is never bound; nothing more is signed for it: %s", is.RequestID, r.IMEI, r.Reason, next)
	}
	return tacerr.Field(tacerr.InvalidState, "request_id",
		"request %q was abandoned after %s and %s with a new request id", is.RequestID, s.cfg.IntentTimeout, what)
}

// replayOrWait answers a duplicate whose twin is still being completed.
func (s *Service) replayOrWait(ctx context.Context, requestID string, hash []byte, caller string, csr []byte) (*Issued, error) {
	for i := 0; i < 50; i++ {
		out, err := s.replay(ctx, requestID, hash, caller, csr)
		if out != nil || err != nil {
			return out, err
		}
		select {
		case <-ctx.Done():
			return nil, tacerr.Wrap(tacerr.Unavailable, ctx.Err(), "request %s is being completed; retry", requestID)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil, tacerr.New(tacerr.Unavailable, "request %s is being completed; retry", requestID)
}

// issuedResult rebuilds the response of a completed issuance.
func (s *Service) issuedResult(ctx context.Context, is *store.Issuance) (*Issued, error) {
	c, err := s.db.CertificateByRequestID(ctx, is.RequestID)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, tacerr.New(tacerr.LedgerInvariant, "issuance %s is issued but has no certificate", is.RequestID)
	}
	cert, err := x509.ParseCertificate(c.DER)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Internal, err, "stored certificate %s", c.Serial)
	}
	recs, err := s.db.GroupIMEIs(ctx, is.ReservationID, is.Group)
	if err != nil {
		return nil, err
	}
	iss := s.issuer(c.IssuerKeyID)
	if iss == nil {
		iss = s.ActiveIssuer()
	}
	return &Issued{DeviceSerial: is.DeviceSerial, IMEIs: store.IMEIsOf(recs), Certificate: cert, CertDER: c.DER,
		ChainPEM: s.chainPEM(iss), CertSerial: c.Serial, IssuedAt: c.IssuedAt, Replayed: true}, nil
}

// chainPEM returns an issuer's chain (issuing CA first) as PEM, encoded once
// per issuer: a string, so that every response shares it without a copy.
func (s *Service) chainPEM(iss *issuance.Issuer) string {
	if v, ok := s.chains.Load(iss); ok {
		return v.(string)
	}
	b := string(ca.ChainPEM(iss.Chain()...))
	s.chains.Store(iss, b)
	return b
}

// sign builds, lints and signs the certificate an intent fixes: in the HSM,
// or at the upstream CA for the device's CSR.
func (s *Service) sign(ctx context.Context, is *store.Issuance, imeis []imei.IMEI, pub any, serial *big.Int, csr []byte) (*x509.Certificate, []byte, *issuance.Issuer, [32]byte, error) {
	iss := s.issuer(is.IssuerKeyID)
	if iss == nil {
		return nil, nil, nil, [32]byte{}, tacerr.New(tacerr.HSMKeyNotFound, "issuer %s of intent %s is not loaded", is.IssuerKeyID, is.RequestID)
	}
	meta, err := s.metaForIMEI(imeis[0])
	if err != nil {
		return nil, nil, nil, [32]byte{}, err
	}
	tok, err := iss.Prepare(issuance.Request{DeviceSerial: is.DeviceSerial, Manufacturer: s.cfg.Manufacturer, Model: meta.ModelName,
		IMEIs: imeis, PublicKey: pub, Serial: serial, NotBefore: is.NotBefore})
	if err != nil {
		return nil, nil, nil, [32]byte{}, err
	}
	tbs := issuance.TBSHash(tok)
	t0 := time.Now()
	var cert *x509.Certificate
	var der []byte
	if iss.Upstream() {
		var req *x509.CertificateRequest
		if req, _, err = policy.ParseCSR(csr, s.cfg.CSRRules); err == nil {
			cert, der, err = iss.IssueUpstream(ctx, tok, req)
		}
	} else {
		cert, der, err = iss.Issue(tok)
	}
	if s.cfg.OnSign != nil {
		s.cfg.OnSign(time.Since(t0))
	}
	if err != nil {
		return nil, nil, nil, [32]byte{}, err
	}
	return cert, der, iss, tbs, nil
}

// metaForIMEI returns the catalogue record of an IMEI's TAC (cached through
// the pool cache when possible).
func (s *Service) metaForIMEI(m imei.IMEI) (tacModel, error) {
	s.mu.Lock()
	for _, c := range s.cache {
		if c.tac.TAC == m.TAC() {
			s.mu.Unlock()
			return tacModel{ModelName: c.tac.ModelName}, nil
		}
	}
	s.mu.Unlock()
	t, err := s.db.TAC(context.Background(), m.TAC())
	if err != nil {
		return tacModel{}, err
	}
	return tacModel{ModelName: t.ModelName}, nil
}

type tacModel struct{ ModelName string }

// complete signs the intent's certificate and commits the binding. A twin
// that completed first wins: its result is returned instead.
func (s *Service) complete(ctx context.Context, is *store.Issuance, imeis []imei.IMEI, pub any, serial *big.Int, csr []byte) (*Issued, error) {
	cert, der, iss, tbs, err := s.sign(ctx, is, imeis, pub, serial, csr)
	if err != nil {
		return nil, s.upstreamFailed(ctx, is, err)
	}
	now := s.cfg.Now().UTC().Truncate(time.Microsecond)
	switch is.Kind {
	case "provision", "bind":
		err = s.db.CommitBinding(ctx, &store.Binding{RequestID: is.RequestID, DeviceSerial: is.DeviceSerial, Station: is.Station,
			ReservationID: is.ReservationID, Group: is.Group, CertSerial: is.CertSerial, IssuerKeyID: is.IssuerKeyID,
			DER: der, TBSHash: tbs[:], SPKIHash: is.SPKIHash, IMEIs: imeis, IssuedAt: now})
	case "reissue":
		var superseded string
		err = s.db.Commit(ctx, func(tx *store.Tx) error {
			d, derr := tx.Device(is.DeviceSerial)
			if derr == nil && d != nil {
				superseded = d.CertSerial
			}
			return reissueTx(tx, is, imeis, der, tbs, now)
		})
		if err == nil && superseded != "" {
			s.revokeUpstream(ctx, superseded, "superseded")
		}
	default:
		err = tacerr.New(tacerr.Internal, "unknown issuance kind %q", is.Kind)
	}
	if err != nil {
		if tacerr.Is(err, tacerr.Conflict) {
			// Completed concurrently (a replay raced us): return that
			// result. Abandoned meanwhile (recovery passed the intent
			// timeout while this replay signed): say so, as a replay
			// after the abandonment is answered, not a bare conflict.
			if latest, lerr := s.db.IssuanceByRequestID(ctx, is.RequestID); lerr == nil && latest != nil {
				switch latest.State {
				case store.IssuanceIssued:
					return s.issuedResult(ctx, latest)
				case store.IssuanceAbandoned:
					return nil, s.abandonedError(ctx, latest)
				}
			}
		}
		if tacerr.Is(err, tacerr.KeyReused) {
			s.keyReused()
			// Another device holds the key: a reissue claims its new key
			// only here, and an intent pending when the ledger was
			// upgraded (migration 0024) may hold no claim; other intents
			// claimed theirs with the reservation (store.claimKeys). No
			// replay can ever bind it. Abandon the intent now, as recovery
			// would after the intent timeout, so that its IMEIs are voided
			// and the device serial is free for a request with another key
			// at once.
			if _, aerr := s.abandon(ctx, is, "device key bound to another device while this request was signed (key_reused)"); aerr != nil && !tacerr.Is(aerr, tacerr.Conflict) {
				s.cfg.Log.Error("could not abandon an intent refused as key_reused; recovery will", "request_id", is.RequestID, "err", aerr.Error())
			}
		}
		return nil, err
	}
	return &Issued{DeviceSerial: is.DeviceSerial, IMEIs: imeis, Certificate: cert, CertDER: der, ChainPEM: s.chainPEM(iss),
		CertSerial: is.CertSerial, IssuedAt: now}, nil
}

// reissueTx records a reissued certificate: the intent issued, the new
// certificate recorded, the old one revoked (superseded), the device and its
// IMEIs pointed at the new certificate.
func reissueTx(tx *store.Tx, is *store.Issuance, imeis []imei.IMEI, der []byte, tbs [32]byte, now time.Time) error {
	if err := tx.SetIssuanceState(is.RequestID, store.IssuanceIssued); err != nil {
		return err
	}
	if err := tx.ClaimDeviceKey(is.SPKIHash, is.DeviceSerial); err != nil {
		return err
	}
	if err := tx.InsertCertificate(&store.CertificateRecord{Serial: is.CertSerial, DeviceSerial: is.DeviceSerial,
		RequestID: is.RequestID, IssuerKeyID: is.IssuerKeyID, DER: der, TBSHash: tbs[:], SPKIHash: is.SPKIHash, IssuedAt: now}); err != nil {
		return err
	}
	d, err := tx.Device(is.DeviceSerial)
	if err != nil {
		return err
	}
	if d == nil || d.State != store.StateBound {
		return tacerr.Field(tacerr.InvalidState, "serial", "device %s is no longer BOUND", is.DeviceSerial)
	}
	if err := tx.RevokeCertificate(d.CertSerial, lifecycle.RevokeSuperseded); err != nil {
		return err
	}
	if err := tx.UpdateDevice(is.DeviceSerial, store.StateBound, is.CertSerial, ""); err != nil {
		return err
	}
	return tx.RecordReissue(imeis, is.DeviceSerial, is.CertSerial, d.CertSerial, is.Station, is.RequestID)
}
