// Package hsm owns tacline's access to PKCS#11 tokens (HSMs): opening a
// token by label or serial and logging in with a PIN read from the
// environment or a file, generating key pairs whose private half can never
// leave the token, handing out cached crypto.Signers, probing health, and
// mapping every PKCS#11 fault to a stable tacerr code. It also bootstraps
// SoftHSM2 tokens for development (InitDev).
//
// It is built on github.com/ThalesGroup/crypto11 over github.com/miekg/pkcs11.
//
// # Promises
//
//   - Private keys made by GenerateKey are CKA_TOKEN, CKA_PRIVATE,
//     CKA_SENSITIVE and not CKA_EXTRACTABLE; Signer refuses (hsm_key_unsafe)
//     a key that is extractable or not sensitive, unless the configuration
//     allows it for development.
//   - A key is looked up once (Token.Signer) and the handle cached; nothing
//     is looked up per signature.
//   - A wrong or locked PIN is reported (hsm_pin_incorrect, hsm_pin_locked)
//     and never retried automatically: repeated bad logins lock tokens.
//   - A dead session, a lost login or a token that went away and came back
//     makes the Token rebuild its whole crypto11 context once (concurrent
//     callers share one rebuild) and retry the operation once; if that
//     fails the caller gets hsm_unavailable (retryable) and Health says so.
//     The PIN never appears in an error or a log line.
//
// # One module per process
//
// A PKCS#11 library is a per-process singleton: it is initialised once
// (C_Initialize) and shared by every Token of the process that names the
// same module. SoftHSM2 reads SOFTHSM2_CONF and scans its token directory
// only at C_Initialize, so (a) all Tokens of a process must agree on
// Config.SoftHSMConf (Open refuses a different one while the module is
// loaded), and (b) a SoftHSM2 token created by another process, or a token
// directory restored after removal, is seen only after every Token of the
// process on that module was closed (the module is then finalised) and one
// is opened again. A Token's recovery closes its own context before it
// opens a new one, so a process with one Token re-reads the token directory.
package hsm

import (
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
	"github.com/tacline/tacline/tacerr"
)

// poolWait bounds how long an operation waits for a free session.
const poolWait = 30 * time.Second

// Token is an open, logged-in PKCS#11 token. Its methods are safe for
// concurrent use.
type Token struct {
	cfg    Config
	module string // cfg.Module with symlinks resolved (crypto11 keys modules by path)
	pin    string // resolved once by Open; used only for (re-)login

	mu     sync.RWMutex // write: rebuild/close; read: every operation on ctx
	ctx    *crypto11.Context
	gen    uint64 // bumped by every rebuild attempt
	broken error  // why ctx is nil after a failed rebuild (hsm_unavailable)
	fatal  bool   // a PIN fault during re-login: no more automatic logins
	closed bool

	recoveries atomic.Uint64

	signersMu sync.Mutex
	signers   map[string]*signer
	firstKey  string

	keygenMu sync.Mutex
	// afterKeyGen, when set (tests), runs after GenerateKey made a key
	// pair and before it reads it back.
	afterKeyGen func(label string)
	// beforeRead, when set (tests), runs before the Ed25519 path reads a
	// private key's safety attributes (what "safety") or a public key's
	// CKA_EC_POINT (what "public"); an error it returns stands for the
	// token's answer (a fault SoftHSM2 cannot produce on demand).
	beforeRead func(what string) error

	// restored names the SoftHSM2 token files Open put back from their
	// copies (softhsmfile.go).
	restored []string

	// p11 is a second handle on the module for what crypto11 cannot do
	// (Ed25519 keys, ed25519.go); never finalised by tacline.
	rawMu sync.Mutex
	p11   *pkcs11.Ctx
}

// moduleUse records, per module path, the SOFTHSM2_CONF it was loaded with
// and how many Tokens use it.
type moduleUse struct {
	conf string
	open int
}

var (
	modulesMu sync.Mutex
	modules   = map[string]*moduleUse{}
)

func acquireModule(module, softhsmConf string) error {
	modulesMu.Lock()
	defer modulesMu.Unlock()
	m := modules[module]
	if m != nil && m.open > 0 {
		if softhsmConf != "" && softhsmConf != m.conf {
			return tacerr.Field(tacerr.InvalidConfig, "hsm.softhsm2_conf",
				"module %s is already loaded in this process with SOFTHSM2_CONF=%q; SoftHSM2 reads it once per load, so every token of one process must use the same file", module, m.conf)
		}
		m.open++
		return nil
	}
	if softhsmConf != "" {
		if err := os.Setenv("SOFTHSM2_CONF", softhsmConf); err != nil {
			return tacerr.Wrap(tacerr.InvalidConfig, err, "set SOFTHSM2_CONF")
		}
	}
	modules[module] = &moduleUse{conf: os.Getenv("SOFTHSM2_CONF"), open: 1}
	return nil
}

func releaseModule(module string) {
	modulesMu.Lock()
	defer modulesMu.Unlock()
	if m := modules[module]; m != nil && m.open > 0 {
		m.open--
	}
}

// Open validates cfg, reads the PIN, loads the module, finds the token and
// logs in. A wrong PIN gives hsm_pin_incorrect and is not retried.
func Open(cfg Config) (*Token, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	module, err := filepath.EvalSymlinks(cfg.Module)
	if err != nil {
		return nil, tacerr.Field(tacerr.InvalidConfig, "hsm.module", "cannot find the PKCS#11 module: %v", err)
	}
	pin, err := cfg.resolvePIN()
	if err != nil {
		return nil, err
	}
	if err := acquireModule(module, cfg.SoftHSMConf); err != nil {
		return nil, err
	}
	t := &Token{cfg: cfg, module: module, pin: pin, signers: map[string]*signer{}}
	if cfg.SoftHSMConf != "" {
		if t.restored, err = restoreSoftHSMTokens(cfg.SoftHSMConf); err != nil {
			releaseModule(module)
			return nil, err
		}
	}
	ctx, err := t.configure()
	if err != nil {
		releaseModule(module)
		return nil, explainMissingToken(err, cfg.SoftHSMConf)
	}
	t.ctx = ctx
	if cfg.SoftHSMConf != "" {
		// A copy that cannot be refreshed keeps the previous one; the
		// token itself is fine, so this never stops a start.
		_ = backupSoftHSMTokens(cfg.SoftHSMConf)
	}
	return t, nil
}

// Restored names the SoftHSM2 token files that Open found empty (a login
// killed mid-write) and put back from the copies it keeps of a development
// token's files; callers log them.
func (t *Token) Restored() []string { return t.restored }

// configure opens a fresh crypto11 context (new sessions, new login).
func (t *Token) configure() (*crypto11.Context, error) {
	ctx, err := crypto11.Configure(&crypto11.Config{
		Path:            t.module,
		TokenLabel:      t.cfg.TokenLabel,
		TokenSerial:     t.cfg.TokenSerial,
		Pin:             t.pin,
		MaxSessions:     t.cfg.sessions() + 1, // crypto11 keeps one for the login
		PoolWaitTimeout: poolWait,
	})
	if err != nil {
		return nil, mapErr(err, "open token "+t.cfg.tokenName())
	}
	return ctx, nil
}

// Config returns the configuration the token was opened with.
func (t *Token) Config() Config { return t.cfg }

// Recoveries returns how many times the token rebuilt its context.
func (t *Token) Recoveries() uint64 { return t.recoveries.Load() }

// Close logs out and releases the sessions. Signers of this token fail
// afterwards. Close is idempotent.
func (t *Token) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	var err error
	if t.ctx != nil {
		err = t.ctx.Close()
		t.ctx = nil
	}
	releaseModule(t.module)
	t.rawMu.Lock()
	if t.p11 != nil {
		t.p11.Destroy() // never Finalize: the library belongs to crypto11
		t.p11 = nil
	}
	t.rawMu.Unlock()
	if err != nil {
		return mapErr(err, "close token "+t.cfg.tokenName())
	}
	return nil
}

func (t *Token) closedErr() error {
	return tacerr.New(tacerr.HSMUnavailable, "token %s is closed", t.cfg.tokenName())
}

// with runs fn on the current context under the read lock, so that no
// rebuild closes the context underneath it. It returns the generation fn
// ran in, for recover.
func (t *Token) with(fn func(ctx *crypto11.Context, gen uint64) error) (uint64, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return t.gen, t.closedErr()
	}
	if t.fatal {
		return t.gen, t.broken
	}
	if t.ctx == nil {
		return t.gen, errBroken
	}
	return t.gen, fn(t.ctx, t.gen)
}

// do runs fn; when it fails with a dead-session fault it rebuilds the
// context (once, shared with concurrent callers) and runs fn once more.
func (t *Token) do(what string, fn func(ctx *crypto11.Context, gen uint64) error) error {
	gen, err := t.with(fn)
	if err == nil {
		return nil
	}
	if isPINFault(err) {
		// A login of fn's own (the Ed25519 path's, on a session the
		// process's lost login left public) was refused.
		return prefixed(what, t.refusePIN(err))
	}
	if !needsRecovery(err) {
		return mapErr(err, what)
	}
	if rerr := t.recover(gen); rerr != nil {
		return prefixed(what, rerr)
	}
	if _, err = t.with(fn); err != nil {
		if needsRecovery(err) {
			return tacerr.Wrap(tacerr.HSMUnavailable, err, "%s: still failing after reopening token %s; retry later", what, t.cfg.tokenName())
		}
		return mapErr(err, what)
	}
	return nil
}

// prefixed says what was being done in front of err's message, keeping its
// code and retryability.
func prefixed(what string, err error) error {
	return tacerr.Prefixed(what, err, tacerr.HSMUnavailable)
}

// recover rebuilds the context unless another caller already did (or tried)
// since generation seen. It returns nil when a usable context is in place.
func (t *Token) recover(seen uint64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return t.closedErr()
	}
	if t.gen != seen {
		if t.ctx == nil {
			return t.broken
		}
		return nil
	}
	if t.fatal {
		return t.broken
	}
	t.gen++
	t.recoveries.Add(1)
	if t.ctx != nil {
		// Close before Configure: when this is the module's last context,
		// crypto11 finalises the library, and the next Configure initialises
		// it again, which makes SoftHSM2 re-read its token directory.
		_ = t.ctx.Close()
		t.ctx = nil
	}
	ctx, err := t.configure()
	if err != nil {
		if isPINFault(err) {
			t.setPINRefused(err)
		} else {
			t.broken = tacerr.Wrap(tacerr.HSMUnavailable, err, "token %s is unavailable and reopening it failed; it is retried on the next request", t.cfg.tokenName())
		}
		return t.broken
	}
	t.ctx = ctx
	t.broken = nil
	return nil
}

// setPINRefused stops every automatic login after the token refused the
// PIN (err): each later operation fails at once with that refusal, since
// each new login would count towards locking the token. The caller holds
// the write lock.
func (t *Token) setPINRefused(err error) {
	t.fatal = true
	t.broken = tacerr.Prefixed("token "+t.cfg.tokenName()+" refused the PIN on re-login; tacline will not log in again by itself (that could lock the token): fix hsm.pin and restart",
		mapErr(err, "log in"), tacerr.HSMPINIncorrect)
}

// refusePIN is setPINRefused for a login refused inside an operation (the
// Ed25519 path logs in by itself on a public session); it returns the
// error every operation answers from now on.
func (t *Token) refusePIN(err error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.fatal {
		t.setPINRefused(err)
	}
	return t.broken
}
