package hsm_test

import (
	"crypto"
	"crypto/ed25519"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/hsm/hsmtest"
	"github.com/tacline/tacline/tacerr"
)

// TestEd25519: SoftHSM2 makes an Ed25519 key that is sensitive and never
// extractable, signs whole messages with CKM_EDDSA that verify under the
// key's public half, refuses a second key of the label, and the key
// survives reopening the token; the ECDSA keys beside it still list.
func TestEd25519(t *testing.T) {
	cfg := hsmtest.NewToken(t)
	tok := hsmtest.Open(t, cfg)
	info, err := tok.GenerateKey("witness", hsm.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := info.Public.(ed25519.PublicKey)
	if !ok || info.Type != hsm.Ed25519 || !info.Sensitive || info.Extractable {
		t.Fatalf("generated %+v", info)
	}
	if _, err := tok.GenerateEd25519("witness"); !tacerr.Is(err, tacerr.Conflict) {
		t.Fatalf("second key of the label: %v", err)
	}
	if _, err := tok.GenerateKey("audit", hsm.ECP256); err != nil {
		t.Fatal(err)
	}
	s, err := tok.Ed25519Signer("witness")
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(s.Public()) {
		t.Fatal("signer's public key differs from the generated one")
	}
	msg := []byte("cosignature/v1\ntime 1\nexample\n1\nAAAA\n")
	sig, err := s.Sign(nil, msg, crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(pub, msg, sig) {
		t.Fatal("HSM signature does not verify")
	}
	if _, err := s.Sign(nil, make([]byte, 32), crypto.SHA256); err == nil {
		t.Fatal("signing a digest was accepted")
	}
	raw := hsmtest.Raw(t, cfg)
	if err := raw.Ctx.FindObjectsInit(raw.Session, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, "witness")}); err != nil {
		t.Fatal(err)
	}
	hs, _, err := raw.Ctx.FindObjects(raw.Session, 2)
	_ = raw.Ctx.FindObjectsFinal(raw.Session)
	if err != nil || len(hs) != 1 {
		t.Fatalf("find private key: %d, %v", len(hs), err)
	}
	// The private value is not readable.
	if _, err := raw.Ctx.GetAttributeValue(raw.Session, hs[0], []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)}); err == nil {
		t.Fatal("CKA_VALUE of the Ed25519 private key was readable")
	}
	if keys, err := tok.Keys(); err != nil || len(keys) != 2 || keys[0].Label != "audit" || keys[1].Label != "witness" ||
		keys[1].Type != hsm.Ed25519 || !pub.Equal(keys[1].Public) || !keys[1].Sensitive || keys[1].Extractable {
		t.Fatalf("Keys with an Ed25519 key on the token: %+v, %v", keys, err)
	}
	if err := tok.Close(); err != nil {
		t.Fatal(err)
	}
	tok2 := hsmtest.Open(t, cfg)
	s2, err := tok2.Ed25519Signer("witness")
	if err != nil {
		t.Fatal(err)
	}
	if sig, err := s2.Sign(nil, msg, crypto.Hash(0)); err != nil || !ed25519.Verify(pub, msg, sig) {
		t.Fatalf("after reopening: %v", err)
	}
	if _, err := tok2.Ed25519Signer("audit"); !tacerr.Is(err, tacerr.InvalidConfig) {
		t.Fatalf("an ECDSA key as Ed25519: %v", err)
	}
}

// TestEd25519PINChangedUnderRunningToken: the Ed25519 path logs in by
// itself when its fresh session is public (the process lost its login).
// When the token refuses that PIN, tacline must not log in again by
// itself, as after crypto11's re-login (TestPINChangedUnderRunningToken):
// it would count towards locking the token. Proof that it did not: the PIN
// is put back after the refusal, and the next signature still fails at
// once instead of logging in with it.
func TestEd25519PINChangedUnderRunningToken(t *testing.T) {
	t.Parallel()
	cfg := hsmtest.NewToken(t)
	tok := hsmtest.Open(t, cfg)
	if _, err := tok.GenerateKey("witness", hsm.Ed25519); err != nil {
		t.Fatal(err)
	}
	s, err := tok.Ed25519Signer("witness")
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("cosignature/v1\n")
	if _, err := s.Sign(nil, msg, crypto.Hash(0)); err != nil {
		t.Fatal(err)
	}
	raw := hsmtest.Raw(t, cfg)
	pinb, err := os.ReadFile(strings.TrimPrefix(cfg.PIN, "file:"))
	if err != nil {
		t.Fatal(err)
	}
	old, changed := strings.TrimSpace(string(pinb)), "changed-5555"
	if err := raw.Ctx.SetPIN(raw.Session, old, changed); err != nil {
		t.Fatalf("C_SetPIN: %v", err)
	}
	if err := raw.Ctx.CloseAllSessions(raw.Slot); err != nil { // the process is logged out
		t.Fatal(err)
	}
	for i := range 2 {
		_, err := s.Sign(nil, msg, crypto.Hash(0))
		e, ok := tacerr.As(err)
		if !ok || e.Code != tacerr.HSMPINIncorrect || e.Retryable() || !strings.Contains(err.Error(), "refused the PIN") {
			t.Fatalf("Sign %d = %v, want hsm_pin_incorrect, not retryable, saying the PIN was refused", i, err)
		}
		if strings.Contains(err.Error(), changed) || strings.Contains(err.Error(), old) {
			t.Fatalf("error shows a PIN: %v", err)
		}
	}
	// The operator puts the PIN back; the running token must still not log in.
	sh, err := raw.Ctx.OpenSession(raw.Slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Ctx.Login(sh, pkcs11.CKU_USER, changed); err != nil {
		t.Fatal(err)
	}
	if err := raw.Ctx.SetPIN(sh, changed, old); err != nil {
		t.Fatal(err)
	}
	if err := raw.Ctx.CloseAllSessions(raw.Slot); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sign(nil, msg, crypto.Hash(0)); !tacerr.Is(err, tacerr.HSMPINIncorrect) {
		t.Fatalf("Sign after the PIN was put back = %v, want hsm_pin_incorrect without a new login (restart to log in again)", err)
	}
	if _, err := tok.Keys(); !tacerr.Is(err, tacerr.HSMPINIncorrect) {
		t.Fatalf("Keys after the refusal = %v, want hsm_pin_incorrect", err)
	}
}

// TestEd25519KeyReadFaults: the token fails while the Ed25519 path reads
// a private key's safety attributes (CKA_SENSITIVE, CKA_EXTRACTABLE...) or
// its public key (CKA_EC_POINT), when a key is loaded, listed or made. A
// failed read says nothing of the key: a lost session (C_CloseAllSessions,
// for real) or a removed token is recovered from, or reported as
// hsm_unavailable (retryable) when it lasts, another fault as
// hsm_device_error; never as hsm_key_unsafe, and the key is neither listed
// as unsafe or without its public key, nor deleted, nor refused once the
// token is back. It was: any failed read of the safety attributes made the
// key "unsafe" (GenerateEd25519 deleted a key it had just made on a fault
// other than a lost session), and Keys listed a key whose public key it
// failed to read without one, err nil.
func TestEd25519KeyReadFaults(t *testing.T) {
	t.Parallel()
	lose := func(raw *hsmtest.RawHandle) error { return raw.Ctx.CloseAllSessions(raw.Slot) }
	answer := func(rv uint) func(*hsmtest.RawHandle) error {
		return func(*hsmtest.RawHandle) error { return pkcs11.Error(rv) }
	}
	faults := []struct {
		name   string
		inject func(*hsmtest.RawHandle) error
		times  int         // how many reads fail; -1: every one until the fault is cleared
		want   tacerr.Code // "" when the operation recovers and succeeds
	}{
		{name: "session lost once", inject: lose, times: 1},
		{name: "token removed once", inject: answer(pkcs11.CKR_DEVICE_REMOVED), times: 1},
		{name: "session lost for good", inject: lose, times: -1, want: tacerr.HSMUnavailable},
		{name: "token stays removed", inject: answer(pkcs11.CKR_DEVICE_REMOVED), times: -1, want: tacerr.HSMUnavailable},
		{name: "device error", inject: answer(pkcs11.CKR_DEVICE_ERROR), times: -1, want: tacerr.HSMDeviceError},
	}
	msg := []byte("cosignature/v1\n")
	safe := func(k hsm.KeyInfo, label string) bool {
		_, ok := k.Public.(ed25519.PublicKey)
		return k.Label == label && k.Sensitive && !k.Extractable && ok
	}
	ops := []struct {
		name  string
		label string // the key the operation needs safe afterwards
		run   func(t *testing.T, tok *hsm.Token) error
	}{
		{name: "load", label: "witness", run: func(t *testing.T, tok *hsm.Token) error {
			s, err := tok.Ed25519Signer("witness")
			if err != nil {
				return err
			}
			sig, err := s.Sign(nil, msg, crypto.Hash(0))
			if err == nil && !ed25519.Verify(s.Public().(ed25519.PublicKey), msg, sig) {
				t.Error("signature does not verify")
			}
			return err
		}},
		{name: "list", label: "witness", run: func(t *testing.T, tok *hsm.Token) error {
			keys, err := tok.Keys()
			if err == nil && (len(keys) != 1 || !safe(keys[0], "witness")) {
				t.Errorf("Keys = %+v, want the witness key, safe, with its public key", keys)
			}
			return err
		}},
		{name: "generate", label: "made", run: func(t *testing.T, tok *hsm.Token) error {
			info, err := tok.GenerateEd25519("made")
			if err == nil && !safe(info, "made") {
				t.Errorf("GenerateEd25519 = %+v", info)
			}
			return err
		}},
	}
	for _, f := range faults {
		for _, read := range []string{"safety", "public"} {
			for _, op := range ops {
				t.Run(f.name+"/"+read+"/"+op.name, func(t *testing.T) {
					t.Parallel()
					cfg := hsmtest.NewToken(t)
					tok := hsmtest.Open(t, cfg)
					if op.name != "generate" {
						if _, err := tok.GenerateEd25519("witness"); err != nil {
							t.Fatal(err)
						}
					}
					raw := hsmtest.Raw(t, cfg)
					var mu sync.Mutex
					fired, on := 0, true
					tok.BeforeKeyRead(func(what string) error {
						mu.Lock()
						defer mu.Unlock()
						if !on || what != read || f.times >= 0 && fired >= f.times {
							return nil
						}
						fired++
						return f.inject(raw)
					})
					err := op.run(t, tok)
					if fired == 0 {
						t.Fatal("the fault was never injected")
					}
					if tacerr.Is(err, tacerr.HSMKeyUnsafe) {
						t.Fatalf("a failed read made the key unsafe: %v", err)
					}
					if f.want == "" {
						if err != nil || tok.Recoveries() != 1 {
							t.Fatalf("got %v after %d recoveries, want success after one", err, tok.Recoveries())
						}
					} else if e, ok := tacerr.As(err); !ok || e.Code != f.want || f.want == tacerr.HSMUnavailable && !e.Retryable() {
						t.Fatalf("got %v, want %s", err, f.want)
					}
					// The token is back: the key is there, safe, and usable.
					mu.Lock()
					on = false
					mu.Unlock()
					if op.name != "generate" {
						if err := op.run(t, tok); err != nil {
							t.Fatalf("after the fault: %v", err)
						}
					}
					keys, err := tok.Keys()
					if err != nil || len(keys) != 1 || !safe(keys[0], op.label) {
						t.Fatalf("Keys after the fault = %+v, %v: want %q, safe", keys, err, op.label)
					}
					if _, err := tok.Ed25519Signer(op.label); err != nil {
						t.Fatalf("key %q refused after the fault: %v", op.label, err)
					}
				})
			}
		}
	}
}
