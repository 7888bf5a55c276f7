package hsm

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/ThalesGroup/crypto11"
	"github.com/tacline/tacline/tacerr"
)

// signer is the crypto.Signer Token.Signer hands out. It wraps crypto11's
// signer for the current context generation; after a rebuild it finds its
// key again, once, by CKA_ID and label, and checks it is the same key.
type signer struct {
	tok   *Token
	label string
	id    []byte
	pub   crypto.PublicKey
	spki  []byte // the public key, DER, to recognise the key after a rebuild
	what  string // "sign with key ..." for error messages

	mu  sync.Mutex // serialises finding the key again after a rebuild
	cur atomic.Pointer[bound]
}

// bound is crypto11's signer for one context generation.
type bound struct {
	gen   uint64
	inner crypto11.Signer
}

var _ crypto.Signer = (*signer)(nil)

// Signer returns a crypto.Signer for the key pair labelled label. The key is
// found, and its attributes checked (hsm_key_unsafe for an extractable or
// non-sensitive key), on the first call only; later calls return the same
// Signer. The Signer survives token recovery.
func (t *Token) Signer(label string) (crypto.Signer, error) {
	if err := checkLabel(label); err != nil {
		return nil, err
	}
	t.signersMu.Lock()
	defer t.signersMu.Unlock()
	if s, ok := t.signers[label]; ok {
		return s, nil
	}
	var s *signer
	err := t.do(fmt.Sprintf("load key %q", label), func(ctx *crypto11.Context, gen uint64) error {
		k, info, err := t.findPair(ctx, label, nil)
		if err != nil {
			return err
		}
		s, err = newSigner(t, info, k, gen)
		return err
	})
	if err != nil {
		return nil, err
	}
	t.signers[label] = s
	if t.firstKey == "" {
		t.firstKey = label
	}
	return s, nil
}

func newSigner(t *Token, info KeyInfo, k crypto11.Signer, gen uint64) (*signer, error) {
	spki, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		return nil, tacerr.Wrap(tacerr.HSMDeviceError, err, "key %q: unsupported public key", info.Label)
	}
	id, err := hex.DecodeString(info.ID)
	if err != nil || len(id) == 0 {
		return nil, tacerr.New(tacerr.HSMKeyNotFound, "key %q has no CKA_ID; tacline needs one to find the key again after a token recovery", info.Label)
	}
	s := &signer{tok: t, label: info.Label, id: id, pub: k.Public(), spki: spki, what: fmt.Sprintf("sign with key %q", info.Label)}
	s.cur.Store(&bound{gen: gen, inner: k})
	return s, nil
}

// Public returns the public key (read once, when the key was loaded).
func (s *signer) Public() crypto.PublicKey { return s.pub }

// Sign signs digest in the HSM. rand is ignored (the token draws its own
// randomness). Faults come back as tacerr errors; a dead session is
// recovered from once, transparently.
func (s *signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	var sig []byte
	err := s.tok.do(s.what, func(ctx *crypto11.Context, gen uint64) error {
		k, err := s.current(ctx, gen)
		if err != nil {
			return err
		}
		sig, err = k.Sign(nil, digest, opts)
		return err
	})
	if err != nil {
		return nil, err
	}
	return sig, nil
}

// current returns crypto11's signer for generation gen, finding the key
// again if the context was rebuilt since it was last used. The caller holds
// the token's read lock.
func (s *signer) current(ctx *crypto11.Context, gen uint64) (crypto11.Signer, error) {
	if b := s.cur.Load(); b.gen == gen {
		return b.inner, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.cur.Load(); b.gen == gen {
		return b.inner, nil
	}
	k, _, err := s.tok.findPair(ctx, s.label, s.id)
	if err != nil {
		return nil, err
	}
	spki, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil || !bytes.Equal(spki, s.spki) {
		return nil, tacerr.New(tacerr.HSMKeyNotFound, "key %q (id %x) on token %s has a different public key than when it was loaded; refusing to sign with it", s.label, s.id, s.tok.cfg.tokenName())
	}
	s.cur.Store(&bound{gen: gen, inner: k})
	return k, nil
}
