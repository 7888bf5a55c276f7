package hsm

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"

	"github.com/tacline/tacline/tacerr"
)

// Ed25519 keys (PKCS#11 v3.0 CKK_EC_EDWARDS, CKM_EDDSA; SoftHSM2 2.6 has
// them). crypto11 v1.6.2 neither makes nor finds them ("unsupported key
// type"), so these go through a second miekg/pkcs11 handle on the same
// module in the same process: the library and the user's login are
// per process in PKCS#11, so the handle's sessions share the login crypto11
// holds. Each operation opens and closes its own session under the token's
// read lock, so no rebuild finalises the library under it, and a dead
// session is recovered from like crypto11's (Token.do). The private key is
// made in the token sensitive and not extractable, like GenerateKey's, and
// never leaves it.
const (
	ckkECEdwards           = 0x40
	ckmECEdwardsKeyPairGen = 0x1055
	ckmEdDSA               = 0x1057
)

// oidEd25519 is id-Ed25519 (RFC 8410), CKA_EC_PARAMS of an Ed25519 key.
var oidEd25519 = asn1.ObjectIdentifier{1, 3, 101, 112}

// raw returns the process's second handle on the module, loading it once.
func (t *Token) raw() (*pkcs11.Ctx, error) {
	t.rawMu.Lock()
	defer t.rawMu.Unlock()
	if t.p11 == nil {
		t.p11 = pkcs11.New(t.module)
		if t.p11 == nil {
			return nil, tacerr.New(tacerr.HSMUnavailable, "load PKCS#11 module %s a second time", t.module)
		}
	}
	return t.p11, nil
}

// withSession runs fn in a fresh session on the token, logged in as the
// user (through crypto11's login, or its own when the token says the
// session is public), under the token's read lock and fault recovery.
func (t *Token) withSession(what string, fn func(p *pkcs11.Ctx, sh pkcs11.SessionHandle) error) error {
	return t.do(what, func(_ *crypto11.Context, _ uint64) error {
		p, err := t.raw()
		if err != nil {
			return err
		}
		slot, err := t.slot(p)
		if err != nil {
			return err
		}
		sh, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
		if err != nil {
			return err
		}
		defer func() { _ = p.CloseSession(sh) }()
		if info, err := p.GetSessionInfo(sh); err != nil {
			return err
		} else if info.State == pkcs11.CKS_RW_PUBLIC_SESSION || info.State == pkcs11.CKS_RO_PUBLIC_SESSION {
			if err := p.Login(sh, pkcs11.CKU_USER, t.pin); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
				return err
			}
		}
		return fn(p, sh)
	})
}

// slot finds the token's slot by label or serial, as crypto11 does.
func (t *Token) slot(p *pkcs11.Ctx) (uint, error) {
	slots, err := p.GetSlotList(true)
	if err != nil {
		return 0, err
	}
	for _, sl := range slots {
		ti, err := p.GetTokenInfo(sl)
		if err != nil {
			continue
		}
		if (t.cfg.TokenSerial != "" && strings.TrimSpace(ti.SerialNumber) == t.cfg.TokenSerial) ||
			(t.cfg.TokenSerial == "" && strings.TrimSpace(ti.Label) == t.cfg.TokenLabel) {
			return sl, nil
		}
	}
	return 0, pkcs11.Error(pkcs11.CKR_TOKEN_NOT_PRESENT)
}

// GenerateEd25519 makes an Ed25519 key pair inside the token with the
// attributes GenerateKey gives every key (private half CKA_TOKEN,
// CKA_PRIVATE, CKA_SENSITIVE, not CKA_EXTRACTABLE, CKA_SIGN; a random
// 16-byte CKA_ID; the label). A label already used on the token is refused
// (conflict). Errors: hsm_device_error when the token has no EdDSA.
// GenerateKey(label, Ed25519) calls it.
func (t *Token) GenerateEd25519(label string) (KeyInfo, error) {
	if err := checkLabel(label); err != nil {
		return KeyInfo{}, err
	}
	t.keygenMu.Lock()
	defer t.keygenMu.Unlock()
	params, _ := asn1.Marshal(oidEd25519)
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return KeyInfo{}, tacerr.Wrap(tacerr.Internal, err, "random CKA_ID")
	}
	var info KeyInfo
	made := false // the key pair exists: a retry after a recovery reads it back (GenerateKey)
	err := t.withSession(fmt.Sprintf("generate Ed25519 key %q", label), func(p *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		var ph, kh pkcs11.ObjectHandle
		if made {
			privs, err := t.findByLabel(p, sh, pkcs11.CKO_PRIVATE_KEY, label, id)
			if err != nil {
				return err
			}
			pubs, err := t.findByLabel(p, sh, pkcs11.CKO_PUBLIC_KEY, label, id)
			if err != nil {
				return err
			}
			if len(privs) != 1 || len(pubs) != 1 {
				return tacerr.New(tacerr.HSMKeyNotFound, "Ed25519 key %q (id %x), made before token %s was reopened, is not on it", label, id, t.cfg.tokenName())
			}
			kh, ph = privs[0], pubs[0]
		} else {
			if n, err := t.findByLabel(p, sh, pkcs11.CKO_PRIVATE_KEY, label, nil); err != nil {
				return err
			} else if len(n) > 0 {
				return tacerr.New(tacerr.Conflict, "a key labelled %q already exists on token %s; choose another label", label, t.cfg.tokenName())
			}
			pubT := []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkECEdwards),
				pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
				pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true), pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params),
				pkcs11.NewAttribute(pkcs11.CKA_LABEL, label), pkcs11.NewAttribute(pkcs11.CKA_ID, id),
			}
			privT := []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkECEdwards),
				pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
				pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
				pkcs11.NewAttribute(pkcs11.CKA_SIGN, true), pkcs11.NewAttribute(pkcs11.CKA_LABEL, label), pkcs11.NewAttribute(pkcs11.CKA_ID, id),
			}
			var err error
			if ph, kh, err = p.GenerateKeyPair(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmECEdwardsKeyPairGen, nil)}, pubT, privT); err != nil {
				return err
			}
			made = true
			if t.afterKeyGen != nil {
				t.afterKeyGen(label)
			}
		}
		switch err := t.checkSafeRaw(p, sh, kh); {
		case errors.Is(err, errUnsafeKey):
			_ = p.DestroyObject(sh, kh)
			_ = p.DestroyObject(sh, ph)
			return tacerr.New(tacerr.HSMKeyUnsafe, "token %s made Ed25519 key %q extractable or not sensitive despite the template; it was deleted", t.cfg.tokenName(), label)
		case err != nil:
			return err // not read, so nothing is deleted: a lost session reads the key back after the recovery
		}
		pub, err := t.ecPoint(p, sh, ph)
		info = KeyInfo{Label: label, ID: hex.EncodeToString(id), Type: Ed25519, Public: pub, Sensitive: true}
		return err
	})
	return info, err
}

// ed25519Keys lists the Ed25519 key pairs on the token (for Keys).
func (t *Token) ed25519Keys() ([]KeyInfo, error) {
	var out []KeyInfo
	err := t.withSession("list Ed25519 keys on token "+t.cfg.tokenName(), func(p *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		out = out[:0]
		if err := p.FindObjectsInit(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckkECEdwards)}); err != nil {
			return err
		}
		ks, _, err := p.FindObjects(sh, 1000)
		if ferr := p.FindObjectsFinal(sh); err == nil {
			err = ferr
		}
		if err != nil {
			return err
		}
		for _, k := range ks {
			attrs, err := p.GetAttributeValue(sh, k, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil), pkcs11.NewAttribute(pkcs11.CKA_ID, nil)})
			if err != nil {
				return err
			}
			info := KeyInfo{Label: string(attrs[0].Value), ID: hex.EncodeToString(attrs[1].Value), Type: Ed25519, Sensitive: true}
			switch err := t.checkSafeRaw(p, sh, k); {
			case errors.Is(err, errUnsafeKey):
				info.Sensitive, info.Extractable = false, true
			case err != nil:
				return err
			}
			// A key without one public half, or with a CKA_EC_POINT that is
			// no key, is listed without its public key; a failed read is
			// the fault it is (a lost session is recovered from).
			pubs, err := t.findByLabel(p, sh, pkcs11.CKO_PUBLIC_KEY, info.Label, attrs[1].Value)
			if err != nil {
				return err
			}
			if len(pubs) == 1 {
				pub, err := t.ecPoint(p, sh, pubs[0])
				if _, notKey := tacerr.As(err); err != nil && !notKey {
					return err
				}
				info.Public = pub
			}
			out = append(out, info)
		}
		return nil
	})
	return out, err
}

// findByLabel returns the objects of class with label (and CKA_ID when id
// is not nil).
func (t *Token) findByLabel(p *pkcs11.Ctx, sh pkcs11.SessionHandle, class uint, label string, id []byte) ([]pkcs11.ObjectHandle, error) {
	tmpl := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class), pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)}
	if id != nil {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_ID, id))
	}
	if err := p.FindObjectsInit(sh, tmpl); err != nil {
		return nil, err
	}
	hs, _, err := p.FindObjects(sh, 4)
	if ferr := p.FindObjectsFinal(sh); err == nil {
		err = ferr
	}
	return hs, err
}

// errUnsafeKey is checkSafeRaw's answer for a key it read and found
// extractable or not sensitive; it never leaves the package.
var errUnsafeKey = errors.New("key is extractable or not sensitive")

// checkSafeRaw returns errUnsafeKey unless the private key is sensitive and
// never was extractable. Any other error means the attributes could not be
// read (a lost session, a token gone): it says nothing of the key, so
// callers must neither refuse nor delete the key for it, only pass it on
// (Token.do recovers from a lost session; mapErr makes the rest
// hsm_unavailable or hsm_device_error).
func (t *Token) checkSafeRaw(p *pkcs11.Ctx, sh pkcs11.SessionHandle, kh pkcs11.ObjectHandle) error {
	if t.beforeRead != nil {
		if err := t.beforeRead("safety"); err != nil {
			return err
		}
	}
	attrs, err := p.GetAttributeValue(sh, kh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_ALWAYS_SENSITIVE, nil), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_NEVER_EXTRACTABLE, nil)})
	if err != nil {
		return err
	}
	on := func(i int) bool { return len(attrs[i].Value) > 0 && attrs[i].Value[0] != 0 }
	if on(0) && on(1) && !on(2) && on(3) {
		return nil
	}
	return errUnsafeKey
}

// ecPoint reads an Ed25519 public key's CKA_EC_POINT: the DER OCTET STRING
// of the 32-byte key (PKCS#11 v3.0), or the bare 32 bytes some tokens give
// (else hsm_device_error; a PKCS#11 error is returned as it is).
func (t *Token) ecPoint(p *pkcs11.Ctx, sh pkcs11.SessionHandle, ph pkcs11.ObjectHandle) (ed25519.PublicKey, error) {
	if t.beforeRead != nil {
		if err := t.beforeRead("public"); err != nil {
			return nil, err
		}
	}
	attrs, err := p.GetAttributeValue(sh, ph, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
	if err != nil {
		return nil, err
	}
	v := attrs[0].Value
	var inner []byte
	if rest, err := asn1.Unmarshal(v, &inner); err == nil && len(rest) == 0 && len(inner) == ed25519.PublicKeySize {
		return ed25519.PublicKey(inner), nil
	}
	if len(v) == ed25519.PublicKeySize {
		return ed25519.PublicKey(bytes.Clone(v)), nil
	}
	return nil, tacerr.New(tacerr.HSMDeviceError, "the token's Ed25519 public key is %d bytes of CKA_EC_POINT, not a 32-byte key", len(v))
}

// Ed25519Signer returns a crypto.Signer for the Ed25519 key pair labelled
// label (made by GenerateEd25519 or another tool): its Sign takes the
// whole message (crypto.Hash(0), as ed25519.PrivateKey's) and signs it in
// the token with CKM_EDDSA. The key is found, and checked safe, now;
// every signature finds it again by label and CKA_ID (one short session
// each: cosigning is rare) and refuses a key whose public half changed.
func (t *Token) Ed25519Signer(label string) (crypto.Signer, error) {
	if err := checkLabel(label); err != nil {
		return nil, err
	}
	s := &edSigner{tok: t, label: label, what: fmt.Sprintf("sign with Ed25519 key %q", label)}
	err := t.withSession(fmt.Sprintf("load Ed25519 key %q", label), func(p *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		ks, err := t.findByLabel(p, sh, pkcs11.CKO_PRIVATE_KEY, label, nil)
		if err != nil {
			return err
		}
		switch {
		case len(ks) == 0:
			return tacerr.New(tacerr.HSMKeyNotFound, "no key pair labelled %q on token %s; create one with `tacline audit witness-key --generate`", label, t.cfg.tokenName())
		case len(ks) > 1:
			return tacerr.New(tacerr.Conflict, "%d key pairs are labelled %q on token %s; labels must be unique", len(ks), label, t.cfg.tokenName())
		}
		attrs, err := p.GetAttributeValue(sh, ks[0], []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil), pkcs11.NewAttribute(pkcs11.CKA_ID, nil)})
		if err != nil {
			return err
		}
		if kt := attrs[0].Value; len(kt) == 0 || kt[0] != ckkECEdwards {
			return tacerr.New(tacerr.InvalidConfig, "key %q on token %s is not an Ed25519 key", label, t.cfg.tokenName())
		}
		s.id = attrs[1].Value
		switch err := t.checkSafeRaw(p, sh, ks[0]); {
		case errors.Is(err, errUnsafeKey) && !t.cfg.AllowUnsafeKeys:
			return tacerr.New(tacerr.HSMKeyUnsafe, "Ed25519 key %q (id %s) on token %s is extractable or not sensitive: generate a new one", label, hex.EncodeToString(s.id), t.cfg.tokenName())
		case err != nil && !errors.Is(err, errUnsafeKey):
			return err
		}
		pubs, err := t.findByLabel(p, sh, pkcs11.CKO_PUBLIC_KEY, label, s.id)
		if err != nil {
			return err
		}
		if len(pubs) != 1 {
			return tacerr.New(tacerr.HSMKeyNotFound, "Ed25519 key %q on token %s has %d public halves, want 1", label, t.cfg.tokenName(), len(pubs))
		}
		s.pub, err = t.ecPoint(p, sh, pubs[0])
		return err
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

type edSigner struct {
	tok   *Token
	label string
	id    []byte
	pub   ed25519.PublicKey
	what  string
}

// Public returns the ed25519.PublicKey.
func (s *edSigner) Public() crypto.PublicKey { return s.pub }

// Sign signs message (not a digest) with CKM_EDDSA in the token; opts must
// be crypto.Hash(0) (pure Ed25519). rand is ignored.
func (s *edSigner) Sign(_ io.Reader, message []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts.HashFunc() != crypto.Hash(0) {
		return nil, tacerr.New(tacerr.Internal, "Ed25519 key %q signs whole messages (crypto.Hash(0)), not %v digests", s.label, opts.HashFunc())
	}
	var sig []byte
	err := s.tok.withSession(s.what, func(p *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		ks, err := s.tok.findByLabel(p, sh, pkcs11.CKO_PRIVATE_KEY, s.label, s.id)
		if err != nil {
			return err
		}
		if len(ks) != 1 {
			return tacerr.New(tacerr.HSMKeyNotFound, "Ed25519 key %q (id %x) is no longer on token %s", s.label, s.id, s.tok.cfg.tokenName())
		}
		if err := p.SignInit(sh, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmEdDSA, nil)}, ks[0]); err != nil {
			return err
		}
		sig, err = p.Sign(sh, message)
		return err
	})
	if err != nil {
		return nil, err
	}
	if !ed25519.Verify(s.pub, message, sig) {
		return nil, tacerr.New(tacerr.HSMDeviceError, "the token's Ed25519 signature with key %q does not verify under the key's public half", s.label)
	}
	return sig, nil
}
