package audit

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"

	"github.com/tacline/tacline/tacerr"
)

// SigTypeECDSA is the C2SP signed-note signature type of ECDSA P-256 with
// SHA-256 signatures.
const SigTypeECDSA = 0x02

// NoteSigner is a note.Signer (signature type 0x02) over a crypto.Signer
// holding an ECDSA P-256 key, such as a key in the HSM.
type NoteSigner struct {
	name string
	hash uint32
	s    crypto.Signer
}

var (
	_ note.Signer   = (*NoteSigner)(nil)
	_ note.Verifier = (*NoteVerifier)(nil)
)

// NewNoteSigner returns a signer named name (the log's origin) over s,
// whose public key must be ECDSA P-256.
func NewNoteSigner(name string, s crypto.Signer) (*NoteSigner, error) {
	pub, ok := s.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, tacerr.New(tacerr.InvalidConfig, "the checkpoint key must be ECDSA P-256, got %T", s.Public())
	}
	_, hash, err := keyDER(name, pub)
	if err != nil {
		return nil, err
	}
	return &NoteSigner{name: name, hash: hash, s: s}, nil
}

// Name returns the key name (the log's origin).
func (s *NoteSigner) Name() string { return s.name }

// KeyHash returns the C2SP key id.
func (s *NoteSigner) KeyHash() uint32 { return s.hash }

// Sign returns the DER ECDSA signature of SHA-256(msg).
func (s *NoteSigner) Sign(msg []byte) ([]byte, error) {
	d := sha256.Sum256(msg)
	sig, err := s.s.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	// A checkpoint is published and cosigned as signed: one the key does
	// not verify (a faulty HSM or driver) would be a log no one can check.
	if !s.Verifier().Verify(msg, sig) {
		return nil, tacerr.New(tacerr.HSMUnavailable, "the checkpoint key %q returned a signature that does not verify under its own public key; nothing was signed or published: check the HSM (tacline hsm health --key <its label>)", s.name)
	}
	return sig, nil
}

// Verifier returns the matching verifier.
func (s *NoteSigner) Verifier() *NoteVerifier {
	return &NoteVerifier{name: s.name, hash: s.hash, pub: s.s.Public().(*ecdsa.PublicKey)}
}

// NoteVerifier verifies signature type 0x02 signatures of one key.
type NoteVerifier struct {
	name string
	hash uint32
	pub  *ecdsa.PublicKey
}

// NewNoteVerifier returns the verifier of pub under name.
func NewNoteVerifier(name string, pub *ecdsa.PublicKey) (*NoteVerifier, error) {
	_, hash, err := keyDER(name, pub)
	if err != nil {
		return nil, err
	}
	return &NoteVerifier{name: name, hash: hash, pub: pub}, nil
}

// Name returns the key name.
func (v *NoteVerifier) Name() string { return v.name }

// KeyHash returns the C2SP key id.
func (v *NoteVerifier) KeyHash() uint32 { return v.hash }

// Verify reports whether sig is this key's signature of msg.
func (v *NoteVerifier) Verify(msg, sig []byte) bool {
	d := sha256.Sum256(msg)
	return ecdsa.VerifyASN1(v.pub, d[:], sig)
}

// Key returns the verifier key string, name+hash+base64(0x02 || SPKI).
func (v *NoteVerifier) Key() string {
	k, _ := VerifierKey(v.name, v.pub)
	return k
}

// VerifierKey returns the verifier key string of pub:
// "<name>+<key id, 8 hex digits>+<base64(0x02 || DER SubjectPublicKeyInfo)>".
func VerifierKey(name string, pub *ecdsa.PublicKey) (string, error) {
	der, hash, err := keyDER(name, pub)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s+%08x+%s", name, hash, base64.StdEncoding.EncodeToString(append([]byte{SigTypeECDSA}, der...))), nil
}

// ParseVerifierKey parses a verifier key string made by VerifierKey.
func ParseVerifierKey(vkey string) (*NoteVerifier, error) {
	bad := func(format string, args ...any) (*NoteVerifier, error) {
		return nil, tacerr.Field(tacerr.InvalidInput, "log-key", "not a tacline log key (want name+keyid+base64): "+format, args...)
	}
	vkey = strings.TrimSpace(vkey)
	name, rest, ok1 := strings.Cut(vkey, "+")
	hashHex, b64, ok2 := strings.Cut(rest, "+")
	if !ok1 || !ok2 {
		return bad("it has fewer than three '+'-separated parts")
	}
	if len(hashHex) != 8 {
		return bad("the key id %q is not 8 hex digits", hashHex)
	}
	h, err := strconv.ParseUint(hashHex, 16, 32)
	if err != nil {
		return bad("the key id %q is not 8 hex digits", hashHex)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) < 2 {
		return bad("the key is not base64")
	}
	if raw[0] != SigTypeECDSA {
		return bad("signature type %#02x, tacline logs use 0x02 (ECDSA P-256)", raw[0])
	}
	k, err := x509.ParsePKIXPublicKey(raw[1:])
	if err != nil {
		return bad("the public key does not parse: %v", err)
	}
	pub, ok := k.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return bad("the public key is not ECDSA P-256")
	}
	v, err := NewNoteVerifier(name, pub)
	if err != nil {
		return nil, err
	}
	if uint64(v.hash) != h {
		return bad("the key id %s does not match the key (want %08x)", hashHex, v.hash)
	}
	return v, nil
}

// keyDER returns the DER SubjectPublicKeyInfo of pub and its key id.
func keyDER(name string, pub *ecdsa.PublicKey) ([]byte, uint32, error) {
	if !validKeyName(name) {
		return nil, 0, tacerr.Field(tacerr.InvalidConfig, "audit.origin", "%q is not a valid key name: use non-empty printable text without spaces or '+', e.g. tacline.example.com/audit", name)
	}
	if pub == nil || pub.Curve != elliptic.P256() {
		return nil, 0, tacerr.New(tacerr.InvalidConfig, "the checkpoint key must be ECDSA P-256")
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, 0, tacerr.Wrap(tacerr.Internal, err, "encode checkpoint public key")
	}
	sum := sha256.Sum256(der)
	return der, binary.BigEndian.Uint32(sum[:4]), nil
}

// validKeyName follows golang.org/x/mod/sumdb/note: non-empty, valid UTF-8,
// no Unicode spaces and no '+'.
func validKeyName(name string) bool {
	return name != "" && utf8.ValidString(name) && strings.IndexFunc(name, unicode.IsSpace) < 0 && !strings.Contains(name, "+")
}
