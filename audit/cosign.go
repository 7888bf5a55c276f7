package audit

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/tacline/tacline/tacerr"
)

// C2SP tlog-cosignature/v1 (https://c2sp.org/tlog-cosignature), Ed25519:
// headquarters is its sites' witness and cosigns each site checkpoint it
// verified. A cosignature is a signed-note signature line whose signature
// is an 8-byte big-endian POSIX timestamp T followed by the Ed25519
// signature of
//
//	"cosignature/v1\n" || "time " || T (decimal) || "\n" || checkpoint body
//
// under a key whose id is SHA-256(name || "\n" || 0x04 || public key)[:4]
// and whose verifier key is name+keyid+base64(0x04 || public key).

// SigTypeCosignatureV1 is the verifier key type of Ed25519
// tlog-cosignature/v1 keys.
const SigTypeCosignatureV1 = 0x04

// cosignatureSize is the timestamp and the Ed25519 signature.
const cosignatureSize = 8 + ed25519.SignatureSize

// Cosigner makes tlog-cosignature/v1 cosignatures (a note.Signer) with an
// Ed25519 crypto.Signer: HQ's witness key in its HSM
// (hsm.Token.Ed25519Signer), or an ed25519.PrivateKey in tests.
type Cosigner struct {
	name string
	hash uint32
	pub  ed25519.PublicKey
	s    crypto.Signer
	now  func() time.Time
}

var (
	_ note.Signer   = (*Cosigner)(nil)
	_ note.Verifier = (*CosignatureVerifier)(nil)
)

// NewCosigner returns the cosigner named name (the witness name, e.g. HQ's
// audit origin) over s, whose public key must be Ed25519; now gives the
// cosignature's time (time.Now when nil).
func NewCosigner(name string, s crypto.Signer, now func() time.Time) (*Cosigner, error) {
	pub, ok := s.Public().(ed25519.PublicKey)
	if !ok {
		return nil, tacerr.New(tacerr.InvalidConfig, "the witness key must be Ed25519, got %T", s.Public())
	}
	if !validKeyName(name) {
		return nil, tacerr.Field(tacerr.InvalidConfig, "audit.origin", "%q is not a valid witness name: use non-empty printable text without spaces or '+'", name)
	}
	if now == nil {
		now = time.Now
	}
	return &Cosigner{name: name, hash: cosignatureKeyID(name, pub), pub: pub, s: s, now: now}, nil
}

// Name returns the witness name.
func (c *Cosigner) Name() string { return c.name }

// KeyHash returns the C2SP key id.
func (c *Cosigner) KeyHash() uint32 { return c.hash }

// Sign returns the timestamped signature of the note body msg.
func (c *Cosigner) Sign(msg []byte) ([]byte, error) {
	t := uint64(c.now().Unix())
	sig, err := c.s.Sign(rand.Reader, cosignedMessage(t, msg), crypto.Hash(0))
	if err != nil {
		return nil, fmt.Errorf("cosign checkpoint: %w", err)
	}
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, cosignatureSize), t), sig...), nil
}

// Verifier returns the matching verifier.
func (c *Cosigner) Verifier() *CosignatureVerifier {
	return &CosignatureVerifier{name: c.name, hash: c.hash, pub: c.pub}
}

// cosignedMessage is what a v1 cosignature at time t signs.
func cosignedMessage(t uint64, body []byte) []byte {
	return append([]byte("cosignature/v1\ntime "+strconv.FormatUint(t, 10)+"\n"), body...)
}

func cosignatureKeyID(name string, pub ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name + "\n"))
	h.Write([]byte{SigTypeCosignatureV1})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil)[:4])
}

// CosignatureVerifier verifies tlog-cosignature/v1 cosignatures of one
// witness key.
type CosignatureVerifier struct {
	name string
	hash uint32
	pub  ed25519.PublicKey
}

// Name returns the witness name.
func (v *CosignatureVerifier) Name() string { return v.name }

// KeyHash returns the C2SP key id.
func (v *CosignatureVerifier) KeyHash() uint32 { return v.hash }

// Verify reports whether sig is a v1 cosignature of the note body msg by
// this key, with a timestamp not above 2^63-1.
func (v *CosignatureVerifier) Verify(msg, sig []byte) bool {
	if len(sig) != cosignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig)
	if t > math.MaxInt64 {
		return false
	}
	return ed25519.Verify(v.pub, cosignedMessage(t, msg), sig[8:])
}

// Key returns the verifier key string, name+keyid+base64(0x04 || public
// key), which `tacline audit witness-key` prints and site.witness_key takes.
func (v *CosignatureVerifier) Key() string {
	return fmt.Sprintf("%s+%08x+%s", v.name, v.hash, base64.StdEncoding.EncodeToString(append([]byte{SigTypeCosignatureV1}, v.pub...)))
}

// ParseCosignatureKey parses a witness verifier key (Key's form).
func ParseCosignatureKey(vkey string) (*CosignatureVerifier, error) {
	bad := func(format string, args ...any) (*CosignatureVerifier, error) {
		return nil, tacerr.Field(tacerr.InvalidInput, "witness_key", "not a tlog-cosignature/v1 witness key (want name+keyid+base64(0x04||Ed25519 key)): "+format, args...)
	}
	vkey = strings.TrimSpace(vkey)
	name, rest, ok1 := strings.Cut(vkey, "+")
	hashHex, b64, ok2 := strings.Cut(rest, "+")
	if !ok1 || !ok2 || !validKeyName(name) {
		return bad("it is not three '+'-separated parts with a valid name")
	}
	h, err := strconv.ParseUint(hashHex, 16, 32)
	if len(hashHex) != 8 || err != nil {
		return bad("the key id %q is not 8 hex digits", hashHex)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != 1+ed25519.PublicKeySize {
		return bad("the key is not the base64 of 33 bytes")
	}
	if raw[0] != SigTypeCosignatureV1 {
		return bad("key type %#02x, a cosignature/v1 witness key has type 0x04", raw[0])
	}
	v := &CosignatureVerifier{name: name, pub: ed25519.PublicKey(bytes.Clone(raw[1:]))}
	v.hash = cosignatureKeyID(name, v.pub)
	if uint64(v.hash) != h {
		return bad("the key id %s does not match the key (want %08x)", hashHex, v.hash)
	}
	return v, nil
}

// Cosigned is a site checkpoint with its witness's cosignature verified.
type Cosigned struct {
	Checkpoint
	// Time is the cosignature's timestamp.
	Time time.Time
}

// OpenCosigned verifies a cosigned checkpoint note: the log's own
// signature under logKey (the site's checkpoint key) and the witness's v1
// cosignature under witness. Errors name which one failed.
func OpenCosigned(msg []byte, logKey note.Verifier, witness *CosignatureVerifier) (Cosigned, error) {
	cp, err := OpenCheckpoint(msg, logKey)
	if err != nil {
		return Cosigned{}, err
	}
	n, err := note.Open(msg, note.VerifierList(witness))
	if err != nil {
		return Cosigned{}, fmt.Errorf("checkpoint of size %d has no valid cosignature by the witness key %s: %v", cp.Size, keyLabel(witness), err)
	}
	for _, s := range n.Sigs {
		if s.Name == witness.Name() && s.Hash == witness.KeyHash() {
			raw, _ := base64.StdEncoding.DecodeString(s.Base64)
			return Cosigned{Checkpoint: cp, Time: time.Unix(int64(binary.BigEndian.Uint64(raw[4:12])), 0).UTC()}, nil
		}
	}
	return Cosigned{}, fmt.Errorf("checkpoint of size %d has no cosignature by the witness key %s", cp.Size, keyLabel(witness))
}
