package provisioner

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/lifecycle"
	"github.com/tacline/tacline/policy"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// Allocate pre-allocates IMEIs for devices whose labels are printed before
// they are programmed. The IMEIs belong to the calling station until bound
// (Bind) or voided.
func (s *Service) Allocate(ctx context.Context, in AllocateInput) (*Allocation, error) {
	if err := checkRequestID(in.RequestID); err != nil {
		return nil, err
	}
	if in.Count < 1 || in.Count > store.MaxDevicesPerReservation {
		return nil, tacerr.Field(tacerr.InvalidInput, "count", "must be between 1 and %d devices, got %d", store.MaxDevicesPerReservation, in.Count)
	}
	st, err := s.station(ctx, in.Actor)
	if err != nil {
		return nil, err
	}
	if in.Pool == "" {
		return nil, tacerr.Field(tacerr.InvalidInput, "pool", "is required")
	}
	m, err := s.choosePool(ctx, st, in.Pool, "")
	if err != nil {
		return nil, err
	}
	per, err := policy.IMEICount(m.tac, in.IMEIsPerDevice)
	if err != nil {
		if e, ok := tacerr.As(err); ok {
			e.Field = "imeis_per_device"
		}
		return nil, err
	}
	hash := requestHash("allocate", in.Pool, strconv.Itoa(in.Count), strconv.Itoa(in.IMEIsPerDevice))
	r, err := s.db.Reserve(ctx, store.ReserveRequest{RequestID: in.RequestID, RequestHash: hash, Pool: m.pool.Name, Caller: st.ID,
		Kind: store.KindPreallocate, Devices: in.Count, PerDevice: per})
	if err != nil {
		return nil, err
	}
	if r.Caller != st.ID {
		return nil, tacerr.Field(tacerr.RequestConflict, "request_id", "request id %q belongs to another caller", in.RequestID)
	}
	return &Allocation{RequestID: r.RequestID, Pool: r.Pool, Devices: r.Devices, CreatedAt: r.CreatedAt, Replayed: r.Replayed}, nil
}

// Bind binds one pre-allocated device group (exactly its IMEIs) to a device
// and issues the device's certificate, in the same intent-sign-commit order
// as Provision.
func (s *Service) Bind(ctx context.Context, in BindInput) (*Issued, error) {
	err := checkRequestID(in.RequestID)
	if err == nil {
		err = policy.CheckDeviceSerial(in.DeviceSerial)
	}
	if err == nil && (len(in.IMEIs) == 0 || len(in.IMEIs) > policy.MaxIMEIs) {
		err = tacerr.Field(tacerr.InvalidInput, "imeis", "must list the 1 to %d IMEIs of one pre-allocated device", policy.MaxIMEIs)
	}
	if err != nil {
		return nil, s.stationFirst(ctx, in.Actor, err)
	}
	ims := make([]string, len(in.IMEIs))
	for i, m := range in.IMEIs {
		ims[i] = m.String()
	}
	hash := requestHash("bind", in.DeviceSerial, strings.Join(ims, ","), csrDigest(in.CSR))
	// One read for the station (authenticated first), the replay and the
	// new-device checks, as Provision.
	nd, out, err := s.admitNewDevice(ctx, in.Actor, in.RequestID, in.DeviceSerial, hash, in.CSR)
	if out != nil || err != nil {
		return out, err
	}
	st := nd.st
	// The IMEIs must be exactly one RESERVED pre-allocated group of this station.
	first, err := s.db.LookupIMEI(ctx, in.IMEIs[0])
	if err != nil {
		if tacerr.Is(err, tacerr.NotFound) {
			return nil, tacerr.Field(tacerr.ReservationNotFound, "imeis", "IMEI %s was never allocated", in.IMEIs[0])
		}
		return nil, err
	}
	if err := s.mayActOn(ctx, in.Actor, first.Pool, "imeis", "IMEI "+in.IMEIs[0].String()); err != nil {
		return nil, err
	}
	// The approval is judged when the device is certified, as Provision
	// does: it may have lapsed since the IMEIs were pre-allocated.
	m, err := s.meta(ctx, first.Pool)
	if err != nil {
		return nil, err
	}
	if err := s.checkApproval(m); err != nil {
		if e, ok := tacerr.As(err); ok {
			e.Field = "imeis" // a bind names no pool: its IMEIs do
		}
		return nil, err
	}
	if res, err := s.db.ReservationByRequestID(ctx, first.RequestID); err != nil {
		return nil, err
	} else if res.Kind != store.KindPreallocate {
		return nil, tacerr.Field(tacerr.InvalidState, "imeis", "IMEI %s was not pre-allocated (it belongs to provisioning request %q)", in.IMEIs[0], first.RequestID)
	}
	group, err := s.db.GroupIMEIs(ctx, first.ReservationID, first.Group)
	if err != nil {
		return nil, err
	}
	if len(group) != len(in.IMEIs) {
		return nil, tacerr.Field(tacerr.InvalidInput, "imeis", "the device group of IMEI %s holds %d IMEIs; list all of them, in order", in.IMEIs[0], len(group))
	}
	for i, r := range group {
		if r.IMEI != in.IMEIs[i] {
			return nil, tacerr.Field(tacerr.InvalidInput, "imeis", "IMEI %d should be %s (the device group's order)", i+1, r.IMEI)
		}
		if r.State != store.StateReserved {
			return nil, tacerr.Field(tacerr.InvalidState, "imeis", "IMEI %s is %s, not RESERVED", r.IMEI, r.State)
		}
	}
	if err := s.checkCertifiable(in.DeviceSerial, m.tac.ModelName, len(in.IMEIs)); err != nil {
		return nil, err
	}
	fix, err := s.newDeviceIntent(ctx, in.Actor, in.DeviceSerial, nd.check.DeviceExists, nd.check.KeyOwner, nd.key.req.PublicKey)
	if err != nil {
		return nil, err
	}
	intent := &store.Issuance{RequestID: in.RequestID, Kind: "bind", RequestHash: hash, Station: st.ID, DeviceSerial: in.DeviceSerial,
		ReservationID: first.ReservationID, Group: first.Group, CertSerial: serialHex(fix.serial), NotBefore: fix.notBefore,
		IssuerKeyID: fix.keyID, PublicKey: nd.key.spki, SPKIHash: nd.key.spkiHash}
	if err := s.db.Commit(ctx, func(tx *store.Tx) error { return tx.InsertIssuance(intent) }); err != nil {
		if tacerr.Is(err, tacerr.RequestConflict) {
			return s.replayOrWait(ctx, in.RequestID, hash, in.Actor.Station, in.CSR)
		}
		return nil, s.countKeyReused(err)
	}
	return s.complete(ctx, intent, in.IMEIs, nd.key.req.PublicKey, fix.serial, in.CSR)
}

// Void voids an IMEI and the rest of its device group, forever. Stations may
// void only RESERVED IMEIs of their factory; operators may also void a BOUND
// device scrapped before shipment (its certificate is revoked).
func (s *Service) Void(ctx context.Context, in VoidInput) error {
	if _, err := lifecycle.ParseVoidReason("reason", string(in.Reason)); err != nil {
		return err
	}
	if len(in.Note) > 1024 {
		return tacerr.Field(tacerr.InvalidInput, "note", "must be at most 1024 characters")
	}
	rec, err := s.db.LookupIMEI(ctx, in.IMEI)
	if err != nil {
		return err
	}
	if err := s.mayActOn(ctx, in.Actor, rec.Pool, "imei", "IMEI "+in.IMEI.String()); err != nil {
		return err
	}
	if err := mayVoid(in, rec); err != nil {
		return err
	}
	return s.db.Commit(ctx, func(tx *store.Tx) error {
		// Decided again on the IMEI as this transaction sees it (its pool
		// never changes, its state may have): a RESERVED IMEI read above
		// may have been bound since.
		rec, err := tx.LookupIMEI(in.IMEI)
		if err != nil {
			return err
		}
		if err := mayVoid(in, rec); err != nil {
			return err
		}
		group, err := tx.GroupIMEIs(rec.ReservationID, rec.Group)
		if err != nil {
			return err
		}
		var ims []imei.IMEI
		for _, r := range group {
			if r.State == store.StateReserved || r.State == store.StateBound {
				ims = append(ims, r.IMEI)
			}
		}
		if len(ims) == 0 {
			return tacerr.Field(tacerr.InvalidState, "imei", "IMEI %s is %s already", in.IMEI, rec.State)
		}
		if rec.State == store.StateBound && rec.DeviceSerial != "" {
			if err := tx.RevokeCertificate(rec.CertSerial, lifecycle.RevokeCessationOfOperation); err != nil {
				return err
			}
			if err := tx.UpdateDevice(rec.DeviceSerial, store.StateVoided, rec.CertSerial, string(in.Reason)); err != nil {
				return err
			}
		}
		return tx.Void(ims, in.Reason, in.Note, in.Actor.ID, "")
	})
}

// mayVoid refuses a void of rec: one that was voided or revoked already
// (invalid_state, whoever asks), and a bound device's unless in's actor is
// an operator (a station voids only RESERVED IMEIs).
func mayVoid(in VoidInput, rec store.IMEIRecord) error {
	switch {
	case rec.State == store.StateVoided:
		return tacerr.Field(tacerr.InvalidState, "imei", "IMEI %s is VOIDED already (%s): nothing to do", in.IMEI, rec.Reason)
	case rec.State == store.StateRevoked:
		return tacerr.Field(tacerr.InvalidState, "imei", "IMEI %s is REVOKED: a revoked device's IMEIs stay REVOKED and are never voided", in.IMEI)
	case !in.Actor.Has(RoleOperator) && rec.State != store.StateReserved:
		return tacerr.Field(tacerr.Forbidden, "imei", "IMEI %s is %s: only an operator can void a bound device", in.IMEI, rec.State)
	}
	return nil
}

// Reissue issues a new certificate for a reworked device with a new key,
// keeping its IMEIs; the old certificate is revoked as superseded.
func (s *Service) Reissue(ctx context.Context, in ReissueInput) (*Issued, error) {
	if err := checkRequestID(in.RequestID); err != nil {
		return nil, err
	}
	hash := requestHash("reissue", in.DeviceSerial, csrDigest(in.CSR))
	if out, err := s.replay(ctx, in.RequestID, hash, in.Actor.ID, in.CSR); out != nil || err != nil {
		return out, err
	}
	d, err := s.db.Device(ctx, in.DeviceSerial)
	if err != nil {
		return nil, err
	}
	if d == nil {
		return nil, tacerr.Field(tacerr.NotFound, "serial", "device %q was never provisioned", in.DeviceSerial)
	}
	recs, err := s.db.GroupIMEIs(ctx, d.ReservationID, d.Group)
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, tacerr.New(tacerr.LedgerInvariant, "device %s has no IMEIs", in.DeviceSerial)
	}
	if err := s.mayActOn(ctx, in.Actor, recs[0].Pool, "serial", "device "+in.DeviceSerial); err != nil {
		return nil, err
	}
	if d.State != store.StateBound {
		return nil, tacerr.Field(tacerr.InvalidState, "serial", "device %s is %s; only a BOUND device can be reissued", in.DeviceSerial, d.State)
	}
	k, err := s.parseCSR(in.CSR)
	if err != nil {
		return nil, err
	}
	if err := s.refuseReusedKey(ctx, k.spkiHash, in.DeviceSerial); err != nil {
		return nil, err
	}
	meta, err := s.metaForIMEI(recs[0].IMEI)
	if err != nil {
		return nil, err
	}
	if err := s.checkCertifiable(in.DeviceSerial, meta.ModelName, len(recs)); err != nil {
		return nil, err
	}
	fix, err := s.newIntent(ctx, k.req.PublicKey)
	if err != nil {
		return nil, err
	}
	actor := in.Actor.ID
	intent := &store.Issuance{RequestID: in.RequestID, Kind: "reissue", RequestHash: hash, Station: actor, DeviceSerial: in.DeviceSerial,
		ReservationID: d.ReservationID, Group: d.Group, CertSerial: serialHex(fix.serial), NotBefore: fix.notBefore,
		IssuerKeyID: fix.keyID, PublicKey: k.spki, SPKIHash: k.spkiHash}
	if err := s.db.Commit(ctx, func(tx *store.Tx) error { return tx.InsertIssuance(intent) }); err != nil {
		if tacerr.Is(err, tacerr.RequestConflict) {
			return s.replayOrWait(ctx, in.RequestID, hash, in.Actor.ID, in.CSR)
		}
		return nil, err
	}
	return s.complete(ctx, intent, store.IMEIsOf(recs), k.req.PublicKey, fix.serial, in.CSR)
}

// Revoke revokes a device: its certificate and its IMEIs (REVOKED, reported
// to the register so operators can block them).
func (s *Service) Revoke(ctx context.Context, in RevokeInput) error {
	if _, err := lifecycle.ParseRevokeReason("reason", string(in.Reason), lifecycle.RevokeDeviceReasons); err != nil {
		return err
	}
	if in.Actor.Scope != ScopeAll {
		// Decided before the transaction: the device's pool never changes.
		if _, err := s.Device(ctx, in.Actor, in.DeviceSerial); err != nil {
			return err
		}
	}
	var certSerial string
	err := s.db.Commit(ctx, func(tx *store.Tx) error {
		d, err := tx.Device(in.DeviceSerial)
		if err != nil {
			return err
		}
		if d == nil {
			return tacerr.Field(tacerr.NotFound, "serial", "device %q was never provisioned", in.DeviceSerial)
		}
		if d.State != store.StateBound {
			return tacerr.Field(tacerr.InvalidState, "serial", "device %s is %s already", in.DeviceSerial, d.State)
		}
		certSerial = d.CertSerial
		group, err := tx.GroupIMEIs(d.ReservationID, d.Group)
		if err != nil {
			return err
		}
		if err := tx.RevokeCertificate(d.CertSerial, in.Reason); err != nil {
			return err
		}
		if err := tx.UpdateDevice(d.Serial, store.StateRevoked, d.CertSerial, string(in.Reason)); err != nil {
			return err
		}
		return tx.Revoke(store.IMEIsOf(group), in.Reason, in.Actor.ID, "")
	})
	if err != nil {
		return err
	}
	s.revokeUpstream(ctx, certSerial, string(in.Reason))
	return nil
}

// revokeUpstream revokes a certificate that an upstream CA (step-ca)
// signed there too, so step-ca's CRL lists it; tacline's ledger, CRLs and
// OCSP already do. A failure is logged and counted (revoke_failed), not
// returned: the revocation is recorded in the ledger either way.
func (s *Service) revokeUpstream(ctx context.Context, certSerial, reason string) {
	c, err := s.db.CertificateBySerial(ctx, certSerial)
	if err != nil || c == nil {
		return
	}
	iss := s.issuer(c.IssuerKeyID)
	if iss == nil || !iss.Upstream() {
		return
	}
	if err := iss.RevokeUpstream(ctx, certSerial, reason); err != nil {
		s.upstreamAlert("revoke_failed")
		s.cfg.Log.Error("certificate revoked in the ledger but not at the upstream CA; revoke it there by hand", "cert_serial", certSerial, "err", err.Error())
	}
}

// recoveryPage is how many pending intents or stale reservations recovery
// reads at a time (a variable so that tests page with fewer).
var recoveryPage = 500

// Recover abandons provisioning intents pending longer than the intent
// timeout (their IMEIs are voided with reason "abandoned", audited and
// reported, never reused) and voids pre-allocated IMEIs older than the
// pre-allocation timeout. It returns how many IMEIs it voided. It pages
// through every one of them, oldest intent first: one it cannot give up yet
// (its revocation at the upstream CA fails, or its transaction does) is
// retried next pass and holds up none of the others; the first such
// ledger error is returned once the pass is over.
func (s *Service) Recover(ctx context.Context) (int, error) {
	voided := 0
	var first error
	failed := func(err error, msg string, args ...any) {
		s.cfg.Log.Warn(msg, append(args, "err", err.Error())...)
		if first == nil {
			first = err
		}
	}
	cutoff := s.cfg.Now().Add(-s.cfg.IntentTimeout)
	var after *store.Issuance
	for {
		pend, err := s.db.PendingIssuances(ctx, cutoff, after, recoveryPage)
		if err != nil {
			return voided, err
		}
		for _, is := range pend {
			n, err := s.recoverIntent(ctx, is)
			if err != nil {
				failed(err, "recovery could not abandon an intent; retrying next pass", "request_id", is.RequestID)
			}
			voided += n
		}
		if len(pend) < recoveryPage {
			break
		}
		after = pend[len(pend)-1]
	}
	if s.cfg.PreallocTimeout > 0 {
		stale := s.cfg.Now().Add(-s.cfg.PreallocTimeout)
		for last := ""; ; {
			ids, err := s.db.StaleReservations(ctx, stale, last, recoveryPage, store.KindPreallocate)
			if err != nil {
				return voided, err
			}
			for _, id := range ids {
				n, err := s.voidStaleReservation(ctx, id)
				if err != nil {
					failed(err, "recovery could not void a stale pre-allocation; retrying next pass", "request_id", id)
				}
				voided += n
			}
			if len(ids) < recoveryPage {
				break
			}
			last = ids[len(ids)-1]
		}
	}
	return voided, first
}

// recoverIntent abandons one intent pending past the intent timeout and
// returns how many IMEIs it voided: none while the revocation of its serial
// at an upstream CA fails (counted, logged, retried next pass) or when a
// replay completed it meanwhile.
func (s *Service) recoverIntent(ctx context.Context, is *store.Issuance) (int, error) {
	note := "intent not completed within " + s.cfg.IntentTimeout.String()
	if iss := s.issuer(is.IssuerKeyID); iss != nil && iss.Upstream() {
		// At most one live certificate per intent: the upstream CA may
		// have signed this serial (a crash after its answer); revoke it
		// there before giving the intent up, or try again next pass.
		if err := iss.RevokeUpstream(ctx, is.CertSerial, "abandoned"); err != nil {
			s.upstreamAlert("revoke_failed")
			s.cfg.Log.Warn("recovery could not revoke an abandoned intent's serial at the upstream CA; retrying next pass",
				"request_id", is.RequestID, "cert_serial", is.CertSerial, "err", err.Error())
			return 0, nil
		}
		note += "; serial " + is.CertSerial + " revoked at the upstream CA"
	}
	n, err := s.abandon(ctx, is, note)
	if tacerr.Is(err, tacerr.Conflict) {
		return 0, nil // completed meanwhile by a replay
	}
	if err != nil {
		return 0, err
	}
	s.cfg.Log.Info("recovery abandoned an issuance intent", "request_id", is.RequestID, "kind", is.Kind, "device_serial", is.DeviceSerial, "imeis_voided", n)
	if is.Kind != "provision" {
		return 0, nil
	}
	return n, nil
}

// abandon marks a pending intent abandoned and voids its RESERVED IMEIs
// (provision intents; bind intents keep their pre-allocated IMEIs, reissue
// intents the device's), with note as the reason's detail. It returns how
// many IMEIs it voided; Conflict if the intent completed meanwhile.
func (s *Service) abandon(ctx context.Context, is *store.Issuance, note string) (int, error) {
	n := 0
	err := s.db.Commit(ctx, func(tx *store.Tx) error {
		n = 0
		if err := tx.SetIssuanceState(is.RequestID, store.IssuanceAbandoned); err != nil {
			return err
		}
		if is.Kind == "reissue" {
			return nil // the device keeps its IMEIs and its previous certificate
		}
		group, err := tx.GroupIMEIs(is.ReservationID, is.Group)
		if err != nil {
			return err
		}
		var ims []imei.IMEI
		for _, r := range group {
			if r.State == store.StateReserved {
				ims = append(ims, r.IMEI)
			}
		}
		if len(ims) == 0 {
			return nil
		}
		n = len(ims)
		if is.Kind == "bind" {
			return nil // pre-allocated IMEIs stay with their label until the pre-allocation timeout
		}
		return tx.Void(ims, lifecycle.VoidAbandoned, note, "recovery", is.RequestID)
	})
	return n, err
}

func (s *Service) voidStaleReservation(ctx context.Context, requestID string) (int, error) {
	n := 0
	err := s.db.Commit(ctx, func(tx *store.Tx) error {
		n = 0
		r, err := tx.ReservationByRequestID(requestID)
		if err != nil {
			return err
		}
		recs, err := tx.ReservationIMEIs(r.ID)
		if err != nil {
			return err
		}
		byGroup := map[int][]imei.IMEI{}
		for _, rec := range recs {
			if rec.State == store.StateReserved {
				byGroup[rec.Group] = append(byGroup[rec.Group], rec.IMEI)
			}
		}
		for _, ims := range byGroup {
			n += len(ims)
			if err := tx.Void(ims, lifecycle.VoidAbandoned, "pre-allocation not bound within "+s.cfg.PreallocTimeout.String(), "recovery", requestID); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}

// RunRecovery runs Recover every interval until ctx ends.
func (s *Service) RunRecovery(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if n, err := s.Recover(ctx); err != nil {
			s.cfg.Log.Warn("recovery pass failed", "err", err)
		} else if n > 0 {
			s.cfg.Log.Info("recovery voided abandoned IMEIs", "imeis", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
