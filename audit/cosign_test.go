package audit_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	tnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/hsm/hsmtest"
	"github.com/tacline/tacline/tacerr"
)

// cosignVector was made by an independent implementation,
// github.com/transparency-dev/formats/note v0.1.1
// (NewSignerForCosignatureV1 over the Ed25519 seed 0x01..0x20, witness
// name hq.example/tacline-witness; its vkey from golang.org/x/mod's
// NewEd25519VerifierKey through formats' VKeyToCosignatureV1).
const (
	cosignVectorSeedFirst = 1
	cosignVectorVKey      = "hq.example/tacline-witness+c7e0b092+BHm1Vi6P5lT5QHixEuipi6eQH4U65pW+1+DjkQutBJZk"
	cosignVectorBody      = "s1.example/tacline-audit\n5\nqjGj1eqVybIDpnjYBcAsaCx3fgkIC2q8/Ha0ue9JFgs=\n"
	cosignVectorNote      = cosignVectorBody + "\n— hq.example/tacline-witness x+CwkgAAAABrEz7SXnDCxEyyh2hMHVAMbLWEiQ8iQumtBJ4OqTO40EyCLxSH3KynR3JG4fQl30HBPZ1vYREsrirm2TX1zpbykA3LDA==\n"
)

func vectorKey() ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = byte(i + cosignVectorSeedFirst)
	}
	return ed25519.NewKeyFromSeed(seed)
}

// TestCosignatureVector: tacline's verifier accepts the independent
// implementation's cosignature, its key string and key id are the same, and
// tacline's cosigner, at the vector's time, writes the same note byte for
// byte (Ed25519 is deterministic).
func TestCosignatureVector(t *testing.T) {
	v, err := audit.ParseCosignatureKey(cosignVectorVKey)
	if err != nil {
		t.Fatal(err)
	}
	if v.Key() != cosignVectorVKey || v.Name() != "hq.example/tacline-witness" || v.KeyHash() != 0xc7e0b092 {
		t.Fatalf("parsed key %s (%08x)", v.Key(), v.KeyHash())
	}
	n, err := note.Open([]byte(cosignVectorNote), note.VerifierList(v))
	if err != nil || n.Text != cosignVectorBody {
		t.Fatalf("open vector: %v", err)
	}
	ts := time.Unix(0x6b133ed2, 0)
	c, err := audit.NewCosigner("hq.example/tacline-witness", vectorKey(), func() time.Time { return ts })
	if err != nil {
		t.Fatal(err)
	}
	if c.Verifier().Key() != cosignVectorVKey {
		t.Fatalf("cosigner key %s, want %s", c.Verifier().Key(), cosignVectorVKey)
	}
	msg, err := note.Sign(&note.Note{Text: cosignVectorBody}, c)
	if err != nil {
		t.Fatal(err)
	}
	if string(msg) != cosignVectorNote {
		t.Fatalf("tacline's cosignature\n%s\ndiffers from the vector\n%s", msg, cosignVectorNote)
	}
	// One bit off in the body, the time or the signature: refused.
	for _, bad := range []string{
		strings.Replace(cosignVectorNote, "\n5\n", "\n6\n", 1),
		strings.Replace(cosignVectorNote, "x+CwkgAAAABrEz7S", "x+CwkgAAAABrEz7T", 1),
		strings.Replace(cosignVectorNote, "ykA3LDA==", "ykA4LDA==", 1),
	} {
		if _, err := note.Open([]byte(bad), note.VerifierList(v)); err == nil {
			t.Fatalf("tampered note verified:\n%s", bad)
		}
	}
}

// TestCosignatureIndependentVerifier: a cosignature tacline makes with a
// fresh key verifies with the independent implementation's
// NewVerifierForCosignatureV1 over tacline's key string, and its timestamp
// reads back.
func TestCosignatureIndependentVerifier(t *testing.T) {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 4, 23, 0, 0, 0, time.UTC)
	c, err := audit.NewCosigner("hq.example/w", k, func() time.Time { return at })
	if err != nil {
		t.Fatal(err)
	}
	n := independentlyVerified(t, c)
	if ts, err := tnote.CoSigV1Timestamp(n.Sigs[0]); err != nil || !ts.Equal(at) {
		t.Fatalf("timestamp %v, %v", ts, err)
	}
	// Not Ed25519, or a malformed key: refused with a named field.
	if _, err := audit.ParseCosignatureKey(strings.Replace(c.Verifier().Key(), "+", "+0", 1)); !tacerr.Is(err, tacerr.InvalidInput) {
		t.Fatalf("bad key id: %v", err)
	}
}

// TestCosignerInHSM: the witness key made in SoftHSM2 (CKM_EDDSA through
// hsm.Token.Ed25519Signer) cosigns, and the independent verifier accepts
// the cosignature under the key string tacline prints.
func TestCosignerInHSM(t *testing.T) {
	tok := hsmtest.Open(t, hsmtest.NewToken(t))
	if _, err := tok.GenerateEd25519("witness"); err != nil {
		t.Fatal(err)
	}
	key, err := tok.Ed25519Signer("witness")
	if err != nil {
		t.Fatal(err)
	}
	c, err := audit.NewCosigner("hq.example/tacline-audit", key, nil)
	if err != nil {
		t.Fatal(err)
	}
	independentlyVerified(t, c)
	// An ECDSA key is not a witness key.
	if _, err := tok.GenerateKey("ec", hsm.ECP256); err != nil {
		t.Fatal(err)
	}
	ec, err := tok.Signer("ec")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audit.NewCosigner("hq.example/tacline-audit", ec, nil); !tacerr.Is(err, tacerr.InvalidConfig) {
		t.Fatalf("ECDSA witness key: %v", err)
	}
}

// independentlyVerified cosigns the vector's body with c and opens the
// note with the independent implementation's verifier of c's key string.
func independentlyVerified(t *testing.T, c *audit.Cosigner) *note.Note {
	t.Helper()
	msg, err := note.Sign(&note.Note{Text: cosignVectorBody}, c)
	if err != nil {
		t.Fatal(err)
	}
	tv, err := tnote.NewVerifierForCosignatureV1(c.Verifier().Key())
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(msg, note.VerifierList(tv))
	if err != nil {
		t.Fatalf("independent verifier: %v", err)
	}
	return n
}
