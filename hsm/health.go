package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"time"
)

// Health is the result of one probe signature.
type Health struct {
	OK      bool          `json:"ok"`
	Key     string        `json:"key,omitempty"` // label of the probe key
	Latency time.Duration `json:"latency_ns"`    // time of the probe signature (and recovery, if one ran)
	Err     string        `json:"error,omitempty"`
}

// Health signs a random digest with the probe key (Config.HealthKey, or
// else the first key a Signer was loaded for) and verifies the signature.
// A token that lost its sessions is recovered by the probe like by any
// signature, so a probe after the token came back reports OK. Health gives
// up waiting when ctx ends (the PKCS#11 call itself cannot be cancelled).
func (t *Token) Health(ctx context.Context) Health {
	label := t.cfg.HealthKey
	if label == "" {
		t.signersMu.Lock()
		label = t.firstKey
		t.signersMu.Unlock()
	}
	if label == "" {
		return Health{Err: "no probe key: set hsm.health_key or load a signing key first"}
	}
	h := Health{Key: label}
	start := time.Now()
	type result struct{ err error }
	done := make(chan result, 1)
	go func() {
		s, err := t.Signer(label)
		if err == nil {
			err = probe(s)
		}
		done <- result{err}
	}()
	select {
	case r := <-done:
		h.Latency = time.Since(start)
		if r.err != nil {
			h.Err = r.err.Error()
			return h
		}
		h.OK = true
	case <-ctx.Done():
		h.Latency = time.Since(start)
		h.Err = "probe signature did not finish: " + ctx.Err().Error()
	}
	return h
}

func probe(s crypto.Signer) error {
	var digest [32]byte
	if _, err := rand.Read(digest[:]); err != nil {
		return err
	}
	sum := sha256.Sum256(digest[:])
	sig, err := s.Sign(rand.Reader, sum[:], crypto.SHA256)
	if err != nil {
		return err
	}
	switch pub := s.Public().(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(pub, sum[:], sig) {
			return errors.New("probe signature does not verify under the key's public key")
		}
	case *rsa.PublicKey:
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
			return errors.New("probe signature does not verify under the key's public key")
		}
	}
	return nil
}
