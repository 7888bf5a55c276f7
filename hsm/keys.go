package hsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
	"github.com/tacline/tacline/tacerr"
)

// KeyType is the algorithm and size of a key pair.
type KeyType int

// The key types GenerateKey makes.
const (
	ECP256 KeyType = iota + 1
	ECP384
	RSA3072
	// Ed25519 keys are made and used outside crypto11 (ed25519.go).
	Ed25519
)

var keyTypeNames = map[KeyType]string{ECP256: "p256", ECP384: "p384", RSA3072: "rsa3072", Ed25519: "ed25519"}

func (k KeyType) String() string {
	if s, ok := keyTypeNames[k]; ok {
		return s
	}
	return "unknown"
}

// MarshalText writes the String form (JSON output of `tacline hsm list`).
func (k KeyType) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// ParseKeyType reads "p256", "p384" or "rsa3072" (also "P-256", "P-384",
// "ecp256", "ecp384", "rsa-3072"; case-insensitive).
func ParseKeyType(s string) (KeyType, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "p256", "p-256", "ecp256", "secp256r1", "prime256v1":
		return ECP256, nil
	case "p384", "p-384", "ecp384", "secp384r1":
		return ECP384, nil
	case "rsa3072", "rsa-3072":
		return RSA3072, nil
	case "ed25519":
		return Ed25519, nil
	}
	return 0, tacerr.Field(tacerr.InvalidInput, "type", "unknown key type %q: use p256, p384, rsa3072 or ed25519", truncate(s, 32))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// keyTypeOf classifies a public key; 0 when tacline does not make such keys.
func keyTypeOf(pub crypto.PublicKey) KeyType {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return ECP256
		case elliptic.P384():
			return ECP384
		}
	case *rsa.PublicKey:
		if k.N.BitLen() == 3072 {
			return RSA3072
		}
	case ed25519.PublicKey:
		return Ed25519
	}
	return 0
}

// KeyInfo describes a key pair on the token.
type KeyInfo struct {
	Label       string           `json:"label"`
	ID          string           `json:"id"` // CKA_ID, hex
	Type        KeyType          `json:"type"`
	Public      crypto.PublicKey `json:"-"`
	Sensitive   bool             `json:"sensitive"`   // CKA_SENSITIVE and CKA_ALWAYS_SENSITIVE
	Extractable bool             `json:"extractable"` // CKA_EXTRACTABLE or not CKA_NEVER_EXTRACTABLE
}

// MaxLabelLen bounds key labels.
const MaxLabelLen = 64

func checkLabel(label string) error {
	if label == "" {
		return tacerr.Field(tacerr.InvalidInput, "label", "a key label is required")
	}
	if len(label) > MaxLabelLen {
		return tacerr.Field(tacerr.InvalidInput, "label", "a key label has at most %d bytes, got %d", MaxLabelLen, len(label))
	}
	for _, r := range label {
		if r < 0x21 || r > 0x7e {
			return tacerr.Field(tacerr.InvalidInput, "label", "a key label is printable ASCII without spaces (letters, digits, '-', '_', '.')")
		}
	}
	return nil
}

// keyAttrs are the private key's attributes read back from the token.
var keyAttrs = []crypto11.AttributeType{
	pkcs11.CKA_ID, pkcs11.CKA_LABEL, pkcs11.CKA_SENSITIVE, pkcs11.CKA_EXTRACTABLE,
	pkcs11.CKA_ALWAYS_SENSITIVE, pkcs11.CKA_NEVER_EXTRACTABLE,
}

func attrBool(set crypto11.AttributeSet, typ crypto11.AttributeType) bool {
	a := set[typ]
	return a != nil && len(a.Value) > 0 && a.Value[0] != 0
}

func attrBytes(set crypto11.AttributeSet, typ crypto11.AttributeType) []byte {
	if a := set[typ]; a != nil {
		return a.Value
	}
	return nil
}

// describe reads a key pair's attributes back from the token.
func describe(ctx *crypto11.Context, k crypto11.Signer) (KeyInfo, []byte, error) {
	set, err := ctx.GetAttributes(k, keyAttrs)
	if err != nil {
		return KeyInfo{}, nil, err
	}
	id := attrBytes(set, pkcs11.CKA_ID)
	return KeyInfo{
		Label:       string(attrBytes(set, pkcs11.CKA_LABEL)),
		ID:          hex.EncodeToString(id),
		Type:        keyTypeOf(k.Public()),
		Public:      k.Public(),
		Sensitive:   attrBool(set, pkcs11.CKA_SENSITIVE) && attrBool(set, pkcs11.CKA_ALWAYS_SENSITIVE),
		Extractable: attrBool(set, pkcs11.CKA_EXTRACTABLE) || !attrBool(set, pkcs11.CKA_NEVER_EXTRACTABLE),
	}, id, nil
}

func (t *Token) checkSafe(info KeyInfo) error {
	if t.cfg.AllowUnsafeKeys || (info.Sensitive && !info.Extractable) {
		return nil
	}
	return tacerr.New(tacerr.HSMKeyUnsafe,
		"key %q (id %s) on token %s is extractable or not sensitive (CKA_EXTRACTABLE, CKA_SENSITIVE, CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE): its private half may exist outside the HSM; generate a new key with `tacline hsm keygen` (hsm.allow_unsafe_keys permits it for development only)",
		info.Label, info.ID, t.cfg.tokenName())
}

// findPair finds exactly one key pair by label (and CKA_ID when id is not
// nil) and checks that it is safe to use.
func (t *Token) findPair(ctx *crypto11.Context, label string, id []byte) (crypto11.Signer, KeyInfo, error) {
	keys, err := ctx.FindKeyPairs(id, []byte(label))
	if err != nil {
		return nil, KeyInfo{}, err
	}
	switch {
	case len(keys) == 0 && id != nil:
		return nil, KeyInfo{}, tacerr.New(tacerr.HSMKeyNotFound, "key %q (id %x) is no longer on token %s", label, id, t.cfg.tokenName())
	case len(keys) == 0:
		return nil, KeyInfo{}, tacerr.New(tacerr.HSMKeyNotFound, "no key pair labelled %q on token %s; create one with `tacline hsm keygen --label %s`", label, t.cfg.tokenName(), label)
	case len(keys) > 1:
		return nil, KeyInfo{}, tacerr.New(tacerr.Conflict, "%d key pairs are labelled %q on token %s; labels must be unique, delete or relabel the extra ones", len(keys), label, t.cfg.tokenName())
	}
	info, _, err := describe(ctx, keys[0])
	if err != nil {
		return nil, KeyInfo{}, err
	}
	if err := t.checkSafe(info); err != nil {
		return nil, KeyInfo{}, err
	}
	return keys[0], info, nil
}

// GenerateKey makes a key pair inside the token: the private half is
// CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, not CKA_EXTRACTABLE, CKA_SIGN,
// with a random 16-byte CKA_ID and the label. A label already used by a key
// on the token is refused (conflict).
func (t *Token) GenerateKey(label string, kt KeyType) (KeyInfo, error) {
	if err := checkLabel(label); err != nil {
		return KeyInfo{}, err
	}
	if _, ok := keyTypeNames[kt]; !ok {
		return KeyInfo{}, tacerr.Field(tacerr.InvalidInput, "type", "unknown key type %d: use ECP256, ECP384, RSA3072 or Ed25519", int(kt))
	}
	if kt == Ed25519 {
		return t.GenerateEd25519(label)
	}
	t.keygenMu.Lock()
	defer t.keygenMu.Unlock()
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return KeyInfo{}, tacerr.Wrap(tacerr.Internal, err, "random CKA_ID")
	}
	var info KeyInfo
	made := false // the key pair exists: a retry after a recovery reads it back
	err := t.do(fmt.Sprintf("generate %s key %q", kt, label), func(ctx *crypto11.Context, _ uint64) error {
		var k crypto11.Signer
		if made {
			// The first attempt made the key and then lost its session
			// (the context was rebuilt): read that key back, found by its
			// CKA_ID, instead of refusing its label as taken.
			keys, err := ctx.FindKeyPairs(id, []byte(label))
			if err != nil {
				return err
			}
			if len(keys) != 1 {
				return tacerr.New(tacerr.HSMKeyNotFound, "key %q (id %x), made before token %s was reopened, is not on it", label, id, t.cfg.tokenName())
			}
			k = keys[0]
		} else {
			existing, err := ctx.FindPrivateKeys(nil, []byte(label))
			if err != nil {
				return err
			}
			if len(existing) > 0 {
				return tacerr.New(tacerr.Conflict, "a key labelled %q already exists on token %s; choose another label", label, t.cfg.tokenName())
			}
			pub, priv, err := keyTemplates(id, label)
			if err != nil {
				return err
			}
			switch kt {
			case ECP256:
				k, err = ctx.GenerateECDSAKeyPairWithAttributes(pub, priv, elliptic.P256())
			case ECP384:
				k, err = ctx.GenerateECDSAKeyPairWithAttributes(pub, priv, elliptic.P384())
			case RSA3072:
				k, err = ctx.GenerateRSAKeyPairWithAttributes(pub, priv, 3072)
			}
			if err != nil {
				return err
			}
			made = true
			if t.afterKeyGen != nil {
				t.afterKeyGen(label)
			}
		}
		var err error
		info, _, err = describe(ctx, k)
		if err != nil {
			return err
		}
		if !info.Sensitive || info.Extractable {
			// The token ignored the template: do not leave such a key behind.
			_ = k.Delete()
			return tacerr.New(tacerr.HSMKeyUnsafe, "token %s made key %q extractable or not sensitive despite the template; it was deleted", t.cfg.tokenName(), label)
		}
		return nil
	})
	return info, err
}

func keyTemplates(id []byte, label string) (pub, priv crypto11.AttributeSet, err error) {
	pub, err = crypto11.NewAttributeSetWithIDAndLabel(id, []byte(label))
	if err != nil {
		return nil, nil, err
	}
	priv = pub.Copy()
	for typ, v := range map[crypto11.AttributeType]bool{pkcs11.CKA_TOKEN: true, pkcs11.CKA_PRIVATE: false, pkcs11.CKA_VERIFY: true} {
		if err := pub.Set(typ, v); err != nil {
			return nil, nil, err
		}
	}
	for typ, v := range map[crypto11.AttributeType]bool{
		pkcs11.CKA_TOKEN: true, pkcs11.CKA_PRIVATE: true, pkcs11.CKA_SENSITIVE: true,
		pkcs11.CKA_EXTRACTABLE: false, pkcs11.CKA_SIGN: true,
	} {
		if err := priv.Set(typ, v); err != nil {
			return nil, nil, err
		}
	}
	return pub, priv, nil
}

// Keys lists the key pairs on the token, sorted by label. Unsafe keys are
// listed too (see KeyInfo.Sensitive and Extractable).
func (t *Token) Keys() ([]KeyInfo, error) {
	var out []KeyInfo
	err := t.do("list keys on token "+t.cfg.tokenName(), func(ctx *crypto11.Context, _ uint64) error {
		out = out[:0]
		// crypto11 fails on key types it does not know (Ed25519): ask it
		// for the ones it does, and list Ed25519 keys without it.
		var keys []crypto11.Signer
		for _, kt := range []uint{pkcs11.CKK_EC, pkcs11.CKK_RSA} {
			attrs := crypto11.NewAttributeSet()
			if err := attrs.Set(pkcs11.CKA_KEY_TYPE, kt); err != nil {
				return err
			}
			ks, err := ctx.FindKeyPairsWithAttributes(attrs)
			if err != nil {
				return err
			}
			keys = append(keys, ks...)
		}
		for _, k := range keys {
			info, _, err := describe(ctx, k)
			if err != nil {
				return err
			}
			out = append(out, info)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	eds, err := t.ed25519Keys()
	if err != nil {
		return nil, err
	}
	out = append(out, eds...)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Label != out[j].Label {
			return out[i].Label < out[j].Label
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// DeleteKey destroys the key pair labelled label on the token (both
// halves) and forgets its cached signer. It is for keys tacline made and
// retired itself (expired OCSP responder keys); a label that matches no
// key is hsm_key_not_found, one that matches several is a conflict and
// nothing is deleted.
func (t *Token) DeleteKey(label string) error {
	if err := checkLabel(label); err != nil {
		return err
	}
	t.signersMu.Lock()
	defer t.signersMu.Unlock()
	err := t.do(fmt.Sprintf("delete key %q", label), func(ctx *crypto11.Context, _ uint64) error {
		keys, err := ctx.FindKeyPairs(nil, []byte(label))
		if err != nil {
			return err
		}
		switch {
		case len(keys) == 0:
			return tacerr.New(tacerr.HSMKeyNotFound, "no key pair labelled %q on token %s", label, t.cfg.tokenName())
		case len(keys) > 1:
			return tacerr.New(tacerr.Conflict, "%d key pairs are labelled %q on token %s; none deleted", len(keys), label, t.cfg.tokenName())
		}
		return keys[0].Delete()
	})
	if err != nil {
		return err
	}
	delete(t.signers, label)
	return nil
}
