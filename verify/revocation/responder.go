package revocation

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// ResponderKeys makes and finds the keys of delegated OCSP responders in
// the HSM (castore.Keys over an hsm.Token).
type ResponderKeys interface {
	GenerateKey(label, curve string) (crypto.Signer, error)
	Signer(label string) (crypto.Signer, error)
	DeleteKey(label string) error
}

// UseResponderKeys lets the publisher make and load delegated OCSP
// responder keys; without it RespondOCSP answers internalError.
func (p *Publisher) UseResponderKeys(k ResponderKeys) {
	p.rmu.Lock()
	defer p.rmu.Unlock()
	p.keys = k
}

// responder returns the delegated OCSP responder of a device issuer:
// the one in memory while less than half its life has passed; else the
// newest one in the ledger (issuers of kind ocsp) whose key this HSM holds;
// else a new one: a P-256 key made in the HSM (non-extractable), certified
// by the issuer for ResponderValidity (capped at the issuer's notAfter)
// with EKU id-kp-OCSPSigning and id-pkix-ocsp-nocheck, and recorded in the
// ledger so every replica on the same HSM uses it. A responder past half
// its life is renewed; if renewal fails, the old one serves while valid.
func (p *Publisher) responder(ctx context.Context, iss Issuer) (ocspResponder, error) {
	p.rmu.Lock()
	defer p.rmu.Unlock()
	now := p.now()
	cur, ok := p.responders[iss.KeyID]
	if ok && !halfLived(cur.Cert, now) {
		return cur, nil
	}
	if p.keys == nil {
		return ocspResponder{}, tacerr.New(tacerr.InvalidConfig, "no HSM keys for OCSP responders of issuer %s", iss.KeyID)
	}
	if l, err := p.loadResponder(ctx, iss, now); err != nil {
		return ocspResponder{}, err
	} else if l != nil && (!ok || l.Cert.NotAfter.After(cur.Cert.NotAfter)) {
		cur, ok = *l, true
		p.responders[iss.KeyID] = cur
		if !halfLived(cur.Cert, now) {
			return cur, nil
		}
	}
	made, err := p.newResponder(ctx, iss, now)
	if err != nil {
		if ok && now.Before(cur.Cert.NotAfter) {
			p.log.Warn("OCSP responder renewal failed; the current one serves until it expires", "issuer", iss.KeyID,
				"not_after", cur.Cert.NotAfter, "err", err.Error())
			return cur, nil
		}
		return ocspResponder{}, err
	}
	p.responders[iss.KeyID] = made
	p.log.Info("OCSP responder certificate made", "issuer", iss.KeyID, "responder", ca.KeyID(made.Cert), "not_after", made.Cert.NotAfter)
	return made, nil
}

// RenewResponders renews the delegated OCSP responders this publisher
// uses (made or loaded by an OCSP request) once half their life has
// passed; the publisher's Run calls it at every poll, and it touches the
// ledger and the HSM only when one is due. A server that never answers
// OCSP makes no responder key: keys are made on the first request.
func (p *Publisher) RenewResponders(ctx context.Context) error {
	p.rmu.Lock()
	var due []string
	now := p.now()
	for k, r := range p.responders {
		if halfLived(r.Cert, now) {
			due = append(due, k)
		}
	}
	p.rmu.Unlock()
	for _, k := range due {
		if iss, ok := p.Issuer(k); ok && !iss.Root {
			if _, err := p.responder(ctx, iss); err != nil {
				return err
			}
		}
	}
	return nil
}

// halfLived reports whether half of cert's validity has passed at now.
func halfLived(cert *x509.Certificate, now time.Time) bool {
	return !now.Before(cert.NotBefore.Add(cert.NotAfter.Sub(cert.NotBefore) / 2))
}

// loadResponder finds the ledger's newest valid responder of iss whose key
// the HSM holds (nil if none). On the way it deletes from the HSM the keys
// of the issuer's responders whose certificates have expired
// (deleteExpiredResponder), so that renewals every half-life do not pile
// up keys in the token over the years.
func (p *Publisher) loadResponder(ctx context.Context, iss Issuer, now time.Time) (*ocspResponder, error) {
	recs, err := p.db.Issuers(ctx)
	if err != nil {
		return nil, err
	}
	var best *ocspResponder
	for _, r := range recs {
		if r.Kind != store.IssuerOCSP {
			continue
		}
		certs, err := ca.ParseChainPEM([]byte(r.CertPEM))
		if err != nil {
			continue
		}
		c := certs[0]
		if !bytes.Equal(c.AuthorityKeyId, iss.Cert.SubjectKeyId) || c.CheckSignatureFrom(iss.Cert) != nil {
			continue
		}
		if !now.Before(c.NotAfter) {
			p.deleteExpiredResponder(iss, r, c)
			continue
		}
		if now.Before(c.NotBefore) || best != nil && !c.NotAfter.After(best.Cert.NotAfter) {
			continue
		}
		s, err := p.keys.Signer(r.Label)
		if err != nil || ca.CheckCertMatchesKey(c, s.Public()) != nil {
			continue // another replica's HSM, or a key deleted
		}
		best = &ocspResponder{Cert: c, Signer: s}
	}
	return best, nil
}

// deleteExpiredResponder destroys the HSM key of an expired responder
// certificate of iss, when this HSM holds it (another replica's HSM, or a
// key already deleted, is left alone). Only keys tacline made for
// responders are touched: the label has the responder prefix and the key
// is the certificate's. A response signed by it no longer verifies (its
// certificate expired), so nothing needs the key. The ledger keeps the
// certificate.
func (p *Publisher) deleteExpiredResponder(iss Issuer, r store.IssuerRecord, c *x509.Certificate) {
	if !strings.HasPrefix(r.Label, responderLabelPrefix) {
		return
	}
	s, err := p.keys.Signer(r.Label)
	if err != nil || ca.CheckCertMatchesKey(c, s.Public()) != nil {
		return
	}
	if err := p.keys.DeleteKey(r.Label); err != nil {
		p.log.Warn("could not delete an expired OCSP responder key", "issuer", iss.KeyID, "label", r.Label, "err", err.Error())
		return
	}
	p.log.Info("expired OCSP responder key deleted from the HSM", "issuer", iss.KeyID, "label", r.Label, "not_after", c.NotAfter)
}

// responderLabelPrefix starts the HSM label of every responder key.
const responderLabelPrefix = "ocsp-"

func (p *Publisher) newResponder(ctx context.Context, iss Issuer, now time.Time) (ocspResponder, error) {
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	label := fmt.Sprintf("%s%.16s-%s-%s", responderLabelPrefix, iss.KeyID, now.UTC().Format("20060102T150405"), hex.EncodeToString(rnd[:]))
	key, err := p.keys.GenerateKey(label, "P-256")
	if err != nil {
		return ocspResponder{}, fmt.Errorf("make the OCSP responder key of issuer %s: %w", iss.KeyID, err)
	}
	cert, err := ca.OCSPResponder(iss.Cert, iss.Signer, key.Public(), ca.ValidFor(now, p.cfg.ResponderValidity))
	if err == nil {
		err = p.db.AddIssuer(ctx, store.IssuerRecord{KeyID: ca.KeyID(cert), Label: label, Kind: store.IssuerOCSP, Curve: "P-256",
			CertPEM: string(ca.ChainPEM(cert)), ChainPEM: string(ca.ChainPEM(iss.Cert))}, "ocsp-responder")
	}
	if err != nil {
		// The key is in no ledger record, so nothing would ever use or
		// delete it; and the next OCSP request (anyone may send one)
		// makes another: delete it now.
		if derr := p.keys.DeleteKey(label); derr != nil {
			p.log.Warn("could not delete the key of an OCSP responder that was not made", "issuer", iss.KeyID, "label", label, "err", derr.Error())
		}
		return ocspResponder{}, err
	}
	return ocspResponder{Cert: cert, Signer: key}, nil
}
