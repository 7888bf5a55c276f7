// Package hsmtest gives tests real SoftHSM2 tokens: NewToken makes a fresh,
// empty token per test and returns the hsm.Config to open it with.
//
// # The SoftHSM2 constraint, and how this package lives with it
//
// SoftHSM2 is a per-process singleton. It reads SOFTHSM2_CONF and scans the
// token directory once, at C_Initialize; tokens that softhsm2-util creates
// afterwards (another process) are invisible until the library is
// finalised and initialised again, and every Token of a process shares the
// one initialised library. So this package keeps, per test binary, one
// shared token directory (under os.MkdirTemp) and one long-lived "anchor"
// token kept open through hsm.Open while any test uses a token. The anchor
// keeps the library initialised, so each NewToken can create its token
// inside the process (C_InitToken on the free slot, then C_InitPIN through
// a second miekg/pkcs11 handle on the same module), and the new token is
// visible at once. Tokens have distinct random labels, so parallel tests do
// not see each other's keys. When the last test using a token ends, the
// anchor is closed (the library is finalised) and the directory removed; a
// later test starts a new one.
//
// Tests must Close every hsm.Token they open before they end (Open below
// registers it); the raw handle from Raw must never call Finalize.
package hsmtest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/pkcs11"
	"github.com/tacline/tacline/hsm"
)

// SOPIN is the security officer PIN of every token NewToken makes.
const SOPIN = "hsmtest-so-pin"

const anchorLabel = "hsmtest-anchor"

type state struct {
	dir, conf, module string
	anchor            *hsm.Token
	raw               *pkcs11.Ctx
}

var (
	mu    sync.Mutex
	users int
	st    *state
)

// NewToken creates a fresh token with a random label and user PIN in the
// binary's shared SoftHSM2 directory and returns its configuration (PIN in
// a file under t.TempDir()). The token stays until the last test using the
// directory ends.
func NewToken(t testing.TB) hsm.Config {
	t.Helper()
	pinFile := filepath.Join(t.TempDir(), "pin")
	pin := "pin-" + randHex(6)
	if err := os.WriteFile(pinFile, []byte(pin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if users == 0 {
		s, err := setup()
		if err != nil {
			t.Fatalf("hsmtest: %v", err)
		}
		st = s
	}
	users++
	t.Cleanup(release)
	label := "t-" + randHex(8)
	if err := st.initToken(label, pin); err != nil {
		t.Fatalf("hsmtest: create token %s: %v", label, err)
	}
	return hsm.Config{Module: st.module, TokenLabel: label, PIN: "file:" + pinFile, SoftHSMConf: st.conf}
}

// Open opens cfg and closes the token when the test ends.
func Open(t testing.TB, cfg hsm.Config) *hsm.Token {
	t.Helper()
	tok, err := hsm.Open(cfg)
	if err != nil {
		t.Fatalf("hsm.Open(%s): %v", cfg, err)
	}
	t.Cleanup(func() { _ = tok.Close() })
	return tok
}

func setup() (*state, error) {
	module, err := hsm.SoftHSMModule()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "tacline-hsmtest-")
	if err != nil {
		return nil, err
	}
	s := &state{dir: dir, conf: filepath.Join(dir, "softhsm2.conf"), module: module}
	fail := func(err error) (*state, error) {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := os.Mkdir(filepath.Join(dir, "tokens"), 0o700); err != nil {
		return fail(err)
	}
	conf := fmt.Sprintf("directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", dir)
	if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
		return fail(err)
	}
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", anchorLabel, "--so-pin", SOPIN, "--pin", SOPIN)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+s.conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("softhsm2-util --init-token: %v: %s", err, out))
	}
	s.anchor, err = hsm.Open(hsm.Config{Module: module, TokenLabel: anchorLabel, PIN: "literal:" + SOPIN, AllowLiteralPIN: true, SoftHSMConf: s.conf})
	if err != nil {
		return fail(fmt.Errorf("open the anchor token (was an hsm.Token of an earlier test left open?): %w", err))
	}
	s.raw = pkcs11.New(module)
	if s.raw == nil {
		_ = s.anchor.Close()
		return fail(fmt.Errorf("cannot load %s", module))
	}
	// The anchor initialised the library; a second handle must find it so.
	if err := s.raw.Initialize(); !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		if err == nil {
			_ = s.raw.Finalize()
		}
		s.raw.Destroy()
		_ = s.anchor.Close()
		return fail(fmt.Errorf("second handle on %s: C_Initialize returned %v, want CKR_CRYPTOKI_ALREADY_INITIALIZED", module, err))
	}
	return s, nil
}

func release() {
	mu.Lock()
	defer mu.Unlock()
	users--
	if users > 0 {
		return
	}
	s := st
	st = nil
	s.raw.Destroy() // never Finalize: the library belongs to crypto11
	_ = s.anchor.Close()
	_ = os.RemoveAll(s.dir)
}

func (s *state) initToken(label, pin string) error {
	slot, err := s.freeSlot()
	if err != nil {
		return err
	}
	if err := s.raw.InitToken(slot, SOPIN, label); err != nil {
		return fmt.Errorf("C_InitToken: %w", err)
	}
	slot, err = SlotByLabel(s.raw, label)
	if err != nil {
		return err
	}
	sh, err := s.raw.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return fmt.Errorf("C_OpenSession: %w", err)
	}
	defer func() { _ = s.raw.CloseSession(sh) }()
	if err := s.raw.Login(sh, pkcs11.CKU_SO, SOPIN); err != nil {
		return fmt.Errorf("C_Login(SO): %w", err)
	}
	defer func() { _ = s.raw.Logout(sh) }()
	if err := s.raw.InitPIN(sh, pin); err != nil {
		return fmt.Errorf("C_InitPIN: %w", err)
	}
	return nil
}

func (s *state) freeSlot() (uint, error) {
	slots, err := s.raw.GetSlotList(true)
	if err != nil {
		return 0, fmt.Errorf("C_GetSlotList: %w", err)
	}
	for _, sl := range slots {
		ti, err := s.raw.GetTokenInfo(sl)
		if err == nil && ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			return sl, nil
		}
	}
	return 0, errors.New("SoftHSM2 offers no free slot")
}

// SlotByLabel finds the slot holding the token labelled label.
func SlotByLabel(p *pkcs11.Ctx, label string) (uint, error) {
	slots, err := p.GetSlotList(true)
	if err != nil {
		return 0, fmt.Errorf("C_GetSlotList: %w", err)
	}
	for _, sl := range slots {
		ti, err := p.GetTokenInfo(sl)
		if err == nil && strings.TrimSpace(ti.Label) == label {
			return sl, nil
		}
	}
	return 0, fmt.Errorf("no token labelled %q", label)
}

// RawHandle is a second miekg/pkcs11 handle on the token's module, in this
// process, with a session on the token logged in as the user. Tests use it
// to do what tacline never does: make unsafe keys, read attributes, close
// sessions behind crypto11's back.
type RawHandle struct {
	Ctx     *pkcs11.Ctx
	Slot    uint
	Session pkcs11.SessionHandle
}

// Raw opens a RawHandle on cfg's token (made by NewToken). The session is
// closed when the test ends (unless the test closed it already).
func Raw(t testing.TB, cfg hsm.Config) *RawHandle {
	t.Helper()
	mu.Lock()
	s := st
	mu.Unlock()
	if s == nil {
		t.Fatal("hsmtest.Raw: no token made by NewToken is in use")
	}
	slot, err := SlotByLabel(s.raw, cfg.TokenLabel)
	if err != nil {
		t.Fatal(err)
	}
	sh, err := s.raw.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		t.Fatalf("C_OpenSession: %v", err)
	}
	t.Cleanup(func() { _ = s.raw.CloseSession(sh) })
	pinb, err := os.ReadFile(strings.TrimPrefix(cfg.PIN, "file:"))
	if err != nil {
		t.Fatal(err)
	}
	err = s.raw.Login(sh, pkcs11.CKU_USER, strings.TrimSpace(string(pinb)))
	if err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
		t.Fatalf("C_Login: %v", err)
	}
	return &RawHandle{Ctx: s.raw, Slot: slot, Session: sh}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
