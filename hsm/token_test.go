package hsm_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/pkcs11"
	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/hsm/hsmtest"
	"github.com/tacline/tacline/tacerr"
)

// verify checks sig over a SHA-256 digest with pub.
func verify(t *testing.T, pub crypto.PublicKey, digest, sig []byte) {
	t.Helper()
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, digest, sig) {
			t.Fatal("ECDSA signature does not verify")
		}
	case *rsa.PublicKey:
		if err := rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig); err != nil {
			t.Fatalf("RSA signature does not verify: %v", err)
		}
	default:
		t.Fatalf("unexpected public key %T", pub)
	}
}

func signAndVerify(t *testing.T, s crypto.Signer) {
	t.Helper()
	digest := sha256.Sum256([]byte(t.Name()))
	sig, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	verify(t, s.Public(), digest[:], sig)
}

// findPriv finds the private key object labelled label through the raw handle.
func findPriv(t *testing.T, r *hsmtest.RawHandle, label string) pkcs11.ObjectHandle {
	t.Helper()
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
	if err := r.Ctx.FindObjectsInit(r.Session, tmpl); err != nil {
		t.Fatal(err)
	}
	objs, _, err := r.Ctx.FindObjects(r.Session, 2)
	_ = r.Ctx.FindObjectsFinal(r.Session)
	if err != nil || len(objs) != 1 {
		t.Fatalf("find private key %q: %v, %d objects", label, err, len(objs))
	}
	return objs[0]
}

func TestGenerateKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		kt     hsm.KeyType
		secret uint // the attribute holding the private value
	}{
		{name: "p256", kt: hsm.ECP256, secret: pkcs11.CKA_VALUE},
		{name: "p384", kt: hsm.ECP384, secret: pkcs11.CKA_VALUE},
		{name: "rsa3072", kt: hsm.RSA3072, secret: pkcs11.CKA_PRIVATE_EXPONENT},
	}
	cfg := hsmtest.NewToken(t)
	tok := hsmtest.Open(t, cfg)
	raw := hsmtest.Raw(t, cfg)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			label := "key-" + tt.name
			info, err := tok.GenerateKey(label, tt.kt)
			if err != nil {
				t.Fatalf("GenerateKey: %v", err)
			}
			if info.Label != label || info.Type != tt.kt || len(info.ID) != 32 || !info.Sensitive || info.Extractable {
				t.Fatalf("KeyInfo = %+v", info)
			}
			// Read the attributes back through a second PKCS#11 handle.
			priv := findPriv(t, raw, label)
			attrs, err := raw.Ctx.GetAttributeValue(raw.Session, priv, []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_TOKEN, nil), pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, nil),
				pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
				pkcs11.NewAttribute(pkcs11.CKA_SIGN, nil), pkcs11.NewAttribute(pkcs11.CKA_ID, nil),
			})
			if err != nil {
				t.Fatal(err)
			}
			want := []bool{true, true, true, false, true}
			for i, w := range want {
				if got := len(attrs[i].Value) == 1 && attrs[i].Value[0] == 1; got != w {
					t.Errorf("attribute 0x%x = %v, want %v", attrs[i].Type, got, w)
				}
			}
			if hex.EncodeToString(attrs[5].Value) != info.ID {
				t.Errorf("CKA_ID %x, KeyInfo.ID %s", attrs[5].Value, info.ID)
			}
			// The private value cannot be read.
			_, err = raw.Ctx.GetAttributeValue(raw.Session, priv, []*pkcs11.Attribute{pkcs11.NewAttribute(tt.secret, nil)})
			if !errors.Is(err, pkcs11.Error(pkcs11.CKR_ATTRIBUTE_SENSITIVE)) {
				t.Errorf("reading the private value (0x%x): %v, want CKR_ATTRIBUTE_SENSITIVE", tt.secret, err)
			}
			s, err := tok.Signer(label)
			if err != nil {
				t.Fatalf("Signer: %v", err)
			}
			signAndVerify(t, s)
			again, err := tok.Signer(label)
			if err != nil || again != s {
				t.Errorf("second Signer(%q) = %p, %v; want the cached %p", label, again, err, s)
			}
		})
	}
	keys, err := tok.Keys()
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, k := range keys {
		labels = append(labels, k.Label+"/"+k.Type.String())
	}
	if got := strings.Join(labels, ","); got != "key-p256/p256,key-p384/p384,key-rsa3072/rsa3072" {
		t.Errorf("Keys = %s", got)
	}
}

// DeleteKey destroys both halves of one key pair, forgets its cached
// signer, and refuses a label that matches no key.
func TestDeleteKey(t *testing.T) {
	t.Parallel()
	cfg := hsmtest.NewToken(t)
	tok := hsmtest.Open(t, cfg)
	raw := hsmtest.Raw(t, cfg)
	for _, l := range []string{"doomed", "kept"} {
		if _, err := tok.GenerateKey(l, hsm.ECP256); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tok.Signer("doomed"); err != nil {
		t.Fatal(err)
	}
	if err := tok.DeleteKey("doomed"); err != nil {
		t.Fatalf("DeleteKey: %v", err)
	}
	for _, class := range []uint{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_PUBLIC_KEY} {
		if err := raw.Ctx.FindObjectsInit(raw.Session, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, class), pkcs11.NewAttribute(pkcs11.CKA_LABEL, "doomed"),
		}); err != nil {
			t.Fatal(err)
		}
		objs, _, err := raw.Ctx.FindObjects(raw.Session, 10)
		raw.Ctx.FindObjectsFinal(raw.Session)
		if err != nil || len(objs) != 0 {
			t.Fatalf("class %d: %d objects labelled doomed left (%v)", class, len(objs), err)
		}
	}
	if _, err := tok.Signer("doomed"); !tacerr.Is(err, tacerr.HSMKeyNotFound) {
		t.Fatalf("Signer after DeleteKey = %v, want hsm_key_not_found (the cached signer must be forgotten)", err)
	}
	if err := tok.DeleteKey("doomed"); !tacerr.Is(err, tacerr.HSMKeyNotFound) {
		t.Fatalf("second DeleteKey = %v, want hsm_key_not_found", err)
	}
	s, err := tok.Signer("kept")
	if err != nil {
		t.Fatal(err)
	}
	signAndVerify(t, s)
}

func TestGenerateKeyRefusals(t *testing.T) {
	t.Parallel()
	tok := hsmtest.Open(t, hsmtest.NewToken(t))
	if _, err := tok.GenerateKey("dup", hsm.ECP256); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		label string
		kt    hsm.KeyType
		want  tacerr.Code
	}{
		{name: "duplicate label", label: "dup", kt: hsm.ECP384, want: tacerr.Conflict},
		{name: "empty label", label: "", kt: hsm.ECP256, want: tacerr.InvalidInput},
		{name: "label with space", label: "a b", kt: hsm.ECP256, want: tacerr.InvalidInput},
		{name: "unknown type", label: "x", kt: hsm.KeyType(99), want: tacerr.InvalidInput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tok.GenerateKey(tt.label, tt.kt); !tacerr.Is(err, tt.want) {
				t.Fatalf("GenerateKey(%q) = %v, want %s", tt.label, err, tt.want)
			}
		})
	}
	keys, err := tok.Keys()
	if err != nil || len(keys) != 1 {
		t.Fatalf("Keys = %v, %v; want only the first key", keys, err)
	}
}

// makeUnsafeKey generates, behind tacline's back, a P-256 key pair whose
// private half is extractable and not sensitive.
func makeUnsafeKey(t *testing.T, r *hsmtest.RawHandle, label string) {
	t.Helper()
	p256 := []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}
	id := []byte("unsafe-" + label)
	_, _, err := r.Ctx.GenerateKeyPair(r.Session,
		[]*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_EC_KEY_PAIR_GEN, nil)},
		[]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, p256), pkcs11.NewAttribute(pkcs11.CKA_ID, id),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		},
		[]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true), pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, true), pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true), pkcs11.NewAttribute(pkcs11.CKA_ID, id),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		})
	if err != nil {
		t.Fatalf("C_GenerateKeyPair: %v", err)
	}
}

func TestExtractableKeyRefused(t *testing.T) {
	t.Parallel()
	cfg := hsmtest.NewToken(t)
	tok := hsmtest.Open(t, cfg)
	raw := hsmtest.Raw(t, cfg)
	makeUnsafeKey(t, raw, "leaky")

	// Its private value can be read: this is what the check protects from.
	priv := findPriv(t, raw, "leaky")
	if _, err := raw.Ctx.GetAttributeValue(raw.Session, priv, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)}); err != nil {
		t.Fatalf("the unsafe key's CKA_VALUE should be readable: %v", err)
	}

	_, err := tok.Signer("leaky")
	if !tacerr.Is(err, tacerr.HSMKeyUnsafe) || !strings.Contains(err.Error(), `"leaky"`) {
		t.Fatalf("Signer(leaky) = %v, want hsm_key_unsafe naming the key", err)
	}
	keys, err := tok.Keys()
	if err != nil || len(keys) != 1 || !keys[0].Extractable || keys[0].Sensitive {
		t.Fatalf("Keys = %+v, %v; want the key listed as extractable, not sensitive", keys, err)
	}

	// Development configuration may allow it.
	dev := cfg
	dev.AllowUnsafeKeys = true
	devTok := hsmtest.Open(t, dev)
	s, err := devTok.Signer("leaky")
	if err != nil {
		t.Fatalf("Signer with allow_unsafe_keys: %v", err)
	}
	signAndVerify(t, s)
}

func TestOpenFaults(t *testing.T) {
	t.Parallel()
	cfg := hsmtest.NewToken(t)
	wrongPINFile := t.TempDir() + "/wrong-pin"
	if err := os.WriteFile(wrongPINFile, []byte("wrong-9876\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(*hsm.Config)
		want tacerr.Code
	}{
		{name: "wrong pin", edit: func(c *hsm.Config) { c.PIN = "file:" + wrongPINFile }, want: tacerr.HSMPINIncorrect},
		{name: "no such token", edit: func(c *hsm.Config) { c.TokenLabel = "no-such-token" }, want: tacerr.HSMTokenAbsent},
		{name: "no such serial", edit: func(c *hsm.Config) { c.TokenLabel, c.TokenSerial = "", "0000000000000000" }, want: tacerr.HSMTokenAbsent},
		{name: "no such module", edit: func(c *hsm.Config) { c.Module = "/nonexistent/libp11.so" }, want: tacerr.InvalidConfig},
		{name: "other softhsm2.conf while loaded", edit: func(c *hsm.Config) { c.SoftHSMConf = "/tmp/other/softhsm2.conf" }, want: tacerr.InvalidConfig},
		{name: "pin env unset", edit: func(c *hsm.Config) { c.PIN = "env:TACLINE_TEST_UNSET_PIN_VAR" }, want: tacerr.InvalidConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cfg
			tt.edit(&c)
			tok, err := hsm.Open(c)
			if err == nil {
				_ = tok.Close()
			}
			if !tacerr.Is(err, tt.want) {
				t.Fatalf("Open = %v, want %s", err, tt.want)
			}
			if strings.Contains(err.Error(), "wrong-9876") {
				t.Errorf("error shows the PIN: %v", err)
			}
		})
	}
	// The right PIN still works: the wrong one was tried once, not retried
	// into a lockout.
	tok := hsmtest.Open(t, cfg)
	if _, err := tok.Signer("missing"); !tacerr.Is(err, tacerr.HSMKeyNotFound) || !strings.Contains(err.Error(), `"missing"`) {
		t.Fatalf("Signer(missing) = %v, want hsm_key_not_found naming it", err)
	}
}

// TestAllSessionsClosed closes every session of the token behind crypto11's
// back (C_CloseAllSessions through a second handle on the same module): the
// login is gone and crypto11's pool holds dead sessions. The next
// signatures, from many goroutines at once, recover with one rebuild.
func TestAllSessionsClosed(t *testing.T) {
	t.Parallel()
	cfg := hsmtest.NewToken(t)
	tok := hsmtest.Open(t, cfg)
	s := newP256(t, tok, "ca")
	// Put several sessions in crypto11's pool.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { signAndVerify(t, s) })
	}
	wg.Wait()
	if h := tok.Health(t.Context()); !h.OK || h.Key != "ca" {
		t.Fatalf("Health before the fault = %+v", h)
	}

	for round := 1; round <= 2; round++ {
		raw := hsmtest.Raw(t, cfg)
		if err := raw.Ctx.CloseAllSessions(raw.Slot); err != nil {
			t.Fatalf("C_CloseAllSessions: %v", err)
		}
		errs := make(chan error, 8)
		for range 8 {
			wg.Go(func() {
				digest := sha256.Sum256([]byte("after"))
				sig, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
				if err == nil && !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), digest[:], sig) {
					err = errors.New("signature does not verify")
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: Sign after C_CloseAllSessions: %v", round, err)
			}
		}
		if got := tok.Recoveries(); got != uint64(round) {
			t.Fatalf("round %d: Recoveries = %d, want %d (one rebuild shared by all signers)", round, got, round)
		}
	}
	if h := tok.Health(t.Context()); !h.OK {
		t.Fatalf("Health after recovery = %+v", h)
	}
	// Administration goes through the same recovery.
	raw := hsmtest.Raw(t, cfg)
	if err := raw.Ctx.CloseAllSessions(raw.Slot); err != nil {
		t.Fatal(err)
	}
	if keys, err := tok.Keys(); err != nil || len(keys) != 1 {
		t.Fatalf("Keys after C_CloseAllSessions = %v, %v", keys, err)
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	cfg := hsmtest.NewToken(t)
	tok := hsmtest.Open(t, cfg)
	if h := tok.Health(t.Context()); h.OK || !strings.Contains(h.Err, "no probe key") {
		t.Fatalf("Health with no key = %+v", h)
	}
	for _, l := range []string{"a", "b"} {
		if _, err := tok.GenerateKey(l, hsm.ECP384); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tok.Signer("b"); err != nil {
		t.Fatal(err)
	}
	if h := tok.Health(t.Context()); !h.OK || h.Key != "b" || h.Latency <= 0 || h.Err != "" {
		t.Fatalf("Health = %+v, want OK with key b", h)
	}
	withKey := cfg
	withKey.HealthKey = "a"
	tok2 := hsmtest.Open(t, withKey)
	if h := tok2.Health(t.Context()); !h.OK || h.Key != "a" {
		t.Fatalf("Health with health_key = %+v", h)
	}
	missing := cfg
	missing.HealthKey = "gone"
	tok3 := hsmtest.Open(t, missing)
	if h := tok3.Health(t.Context()); h.OK || !strings.Contains(h.Err, string(tacerr.HSMKeyNotFound)) {
		t.Fatalf("Health with a missing key = %+v", h)
	}
	if err := tok.Close(); err != nil {
		t.Fatal(err)
	}
	if h := tok.Health(t.Context()); h.OK || !strings.Contains(h.Err, "closed") {
		t.Fatalf("Health after Close = %+v", h)
	}
}

// TestPINChangedUnderRunningToken: after a recovery the re-login is refused;
// tacline must not try that PIN again by itself.
func TestPINChangedUnderRunningToken(t *testing.T) {
	t.Parallel()
	cfg := hsmtest.NewToken(t)
	tok := hsmtest.Open(t, cfg)
	s := newP256(t, tok, "ca")
	raw := hsmtest.Raw(t, cfg)
	old, err := os.ReadFile(strings.TrimPrefix(cfg.PIN, "file:"))
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Ctx.SetPIN(raw.Session, strings.TrimSpace(string(old)), "changed-5555"); err != nil {
		t.Fatalf("C_SetPIN: %v", err)
	}
	if err := raw.Ctx.CloseAllSessions(raw.Slot); err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("x"))
	for i := range 3 {
		_, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
		e, ok := tacerr.As(err)
		if !ok || e.Code != tacerr.HSMPINIncorrect || e.Retryable() || e.RetryAfter() != 0 || !strings.Contains(err.Error(), "refused the PIN") {
			t.Fatalf("Sign %d = %v, want hsm_pin_incorrect, not retryable, no Retry-After, saying the PIN was refused", i, err)
		}
		if strings.Contains(err.Error(), "changed-5555") || strings.Contains(err.Error(), strings.TrimSpace(string(old))) {
			t.Fatalf("error shows a PIN: %v", err)
		}
	}
	if got := tok.Recoveries(); got != 1 {
		t.Fatalf("Recoveries = %d, want 1: a refused PIN must not be tried again", got)
	}
	if h := tok.Health(t.Context()); h.OK {
		t.Fatalf("Health = %+v, want not OK", h)
	}
}

// TestKeyDeletedBehindOurBack: a cached Signer whose key disappears gets
// hsm_key_not_found naming the key (after one recovery attempt), not a
// signature with another key.
func TestKeyDeletedBehindOurBack(t *testing.T) {
	t.Parallel()
	cfg := hsmtest.NewToken(t)
	tok := hsmtest.Open(t, cfg)
	s := newP256(t, tok, "doomed")
	signAndVerify(t, s)
	raw := hsmtest.Raw(t, cfg)
	if err := raw.Ctx.DestroyObject(raw.Session, findPriv(t, raw, "doomed")); err != nil {
		t.Fatalf("C_DestroyObject: %v", err)
	}
	// A new key with the same label is not the same key.
	if _, err := tok.GenerateKey("doomed", hsm.ECP256); err != nil {
		t.Fatalf("GenerateKey after deletion: %v", err)
	}
	digest := sha256.Sum256([]byte("x"))
	_, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
	if !tacerr.Is(err, tacerr.HSMKeyNotFound) || !strings.Contains(err.Error(), `"doomed"`) {
		t.Fatalf("Sign with a deleted key = %v, want hsm_key_not_found naming it", err)
	}
}

// TestSlotRenumbered: a token that went away and came back in another slot
// (PKCS#11 modules renumber slots; tacline finds tokens by label or
// serial for that reason) makes operations on the old slot id fail with
// CKR_SLOT_ID_INVALID, e.g. when crypto11's pool opens a session. The
// context must be rebuilt (which finds the token by label again) and the
// operation retried, not answered hsm_token_not_present with the dead slot
// kept for every later request. SoftHSM2 never renumbers a slot within a
// process, so the operation injects the result once.
func TestSlotRenumbered(t *testing.T) {
	t.Parallel()
	cfg := hsmtest.NewToken(t)
	tok := hsmtest.Open(t, cfg)
	s := newP256(t, tok, "ca")
	calls := 0
	err := tok.DoForTest("open a session", func() error {
		calls++
		if calls == 1 {
			return pkcs11.Error(pkcs11.CKR_SLOT_ID_INVALID)
		}
		return nil
	})
	if err != nil || calls != 2 {
		t.Fatalf("operation after CKR_SLOT_ID_INVALID = %v after %d calls, want success on the retry after one rebuild", err, calls)
	}
	if got := tok.Recoveries(); got != 1 {
		t.Fatalf("Recoveries = %d, want 1", got)
	}
	signAndVerify(t, s)
}

// TestGenerateKeyLosesSession: the token loses its sessions (and the
// login) right after it made a key pair, before GenerateKey read the key's
// attributes back. The recovery's retry must answer the key it made, not
// refuse the label as taken by that very key (which left an orphan key and
// a failed `ca init`, or an OCSP responder key the server never deletes).
// Ed25519 keys go through their own path (ed25519.go) with the same rule.
func TestGenerateKeyLosesSession(t *testing.T) {
	t.Parallel()
	for _, kt := range []hsm.KeyType{hsm.ECP256, hsm.Ed25519} {
		t.Run(kt.String(), func(t *testing.T) {
			cfg := hsmtest.NewToken(t)
			tok := hsmtest.Open(t, cfg)
			raw := hsmtest.Raw(t, cfg)
			fired := false
			tok.AfterKeyGen(func(label string) {
				if !fired {
					fired = true
					if err := raw.Ctx.CloseAllSessions(raw.Slot); err != nil {
						t.Errorf("C_CloseAllSessions: %v", err)
					}
				}
			})
			info, err := tok.GenerateKey("made", kt)
			if err != nil {
				t.Fatalf("GenerateKey with the session lost after the key was made: %v", err)
			}
			if !fired || tok.Recoveries() != 1 {
				t.Fatalf("fault injected %v, recoveries %d: want one recovery", fired, tok.Recoveries())
			}
			if info.Label != "made" || info.Type != kt || !info.Sensitive || info.Extractable || info.ID == "" || info.Public == nil {
				t.Fatalf("KeyInfo = %+v", info)
			}
			keys, err := tok.Keys()
			if err != nil || len(keys) != 1 || keys[0].ID != info.ID {
				t.Fatalf("Keys = %+v, %v: want the one key made, id %s", keys, err, info.ID)
			}
			var s crypto.Signer
			if kt == hsm.Ed25519 {
				s, err = tok.Ed25519Signer("made")
			} else {
				s, err = tok.Signer("made")
			}
			if err != nil {
				t.Fatal(err)
			}
			if kt == hsm.Ed25519 {
				msg := []byte("m")
				if sig, err := s.Sign(nil, msg, crypto.Hash(0)); err != nil || !ed25519.Verify(info.Public.(ed25519.PublicKey), msg, sig) {
					t.Fatalf("Ed25519 signature: %v", err)
				}
				return
			}
			signAndVerify(t, s)
		})
	}
}
