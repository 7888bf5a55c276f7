package hsm

import (
	"context"
	"errors"
	"strings"

	"github.com/miekg/pkcs11"
	"github.com/tacline/tacline/tacerr"
)

// errBroken stands for "the context is gone and must be rebuilt"; it never
// leaves the package.
var errBroken = errors.New("hsm: PKCS#11 context is not open")

// p11Code returns the PKCS#11 return value in err's chain, if any.
func p11Code(err error) (pkcs11.Error, bool) {
	var pe pkcs11.Error
	if errors.As(err, &pe) {
		return pe, true
	}
	return 0, false
}

// needsRecovery reports whether err means the session or the login is dead
// (or the token went away and may have come back): the cure is to rebuild
// the whole crypto11 context and log in again. CKR_OBJECT_HANDLE_INVALID and
// CKR_KEY_HANDLE_INVALID are included because a token that came back (or
// was re-read by the module) gives its objects new handles, and
// CKR_SLOT_ID_INVALID and CKR_TOKEN_NOT_RECOGNIZED because it may come
// back in another slot: crypto11 keeps the slot it found the token in, and
// only a new context finds the token again by label or serial.
func needsRecovery(err error) bool {
	if errors.Is(err, errBroken) {
		return true
	}
	pe, ok := p11Code(err)
	if !ok {
		// crypto11 wraps "session closed" in its own text at times.
		return false
	}
	switch pe {
	case pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED,
		pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_TOKEN_NOT_PRESENT,
		pkcs11.CKR_USER_NOT_LOGGED_IN, pkcs11.CKR_OBJECT_HANDLE_INVALID,
		pkcs11.CKR_KEY_HANDLE_INVALID, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED,
		pkcs11.CKR_SLOT_ID_INVALID, pkcs11.CKR_TOKEN_NOT_RECOGNIZED:
		return true
	}
	return false
}

// isPINFault reports whether err is a login failure that must never be
// retried automatically (each retry counts towards locking the token).
func isPINFault(err error) bool {
	pe, ok := p11Code(err)
	return ok && (pe == pkcs11.CKR_PIN_INCORRECT || pe == pkcs11.CKR_PIN_LOCKED ||
		pe == pkcs11.CKR_PIN_EXPIRED || pe == pkcs11.CKR_PIN_INVALID || pe == pkcs11.CKR_PIN_LEN_RANGE)
}

// mapErr turns a crypto11 or PKCS#11 error into a tacerr error. what says
// what was being done ("sign with key \"ca\"", "log in to token label ...").
// The PIN never reaches here, so it never reaches a message.
func mapErr(err error, what string) error {
	if err == nil {
		return nil
	}
	if _, ok := tacerr.As(err); ok {
		return err
	}
	if pe, ok := p11Code(err); ok {
		switch pe {
		case pkcs11.CKR_PIN_INCORRECT, pkcs11.CKR_PIN_INVALID, pkcs11.CKR_PIN_LEN_RANGE:
			return tacerr.Wrap(tacerr.HSMPINIncorrect, err, "%s: the token refused the PIN; check hsm.pin (tacline never retries a wrong PIN by itself: repeated failures lock the token)", what)
		case pkcs11.CKR_PIN_LOCKED:
			return tacerr.Wrap(tacerr.HSMPINLocked, err, "%s: the user PIN is locked; the token's security officer must unlock or reset it", what)
		case pkcs11.CKR_PIN_EXPIRED:
			return tacerr.Wrap(tacerr.HSMPINLocked, err, "%s: the user PIN has expired; set a new one on the token", what)
		case pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_TOKEN_NOT_RECOGNIZED, pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_SLOT_ID_INVALID:
			return tacerr.Wrap(tacerr.HSMTokenAbsent, err, "%s: the token is not present; reconnect it or check hsm.token_label/hsm.token_serial", what)
		case pkcs11.CKR_OBJECT_HANDLE_INVALID, pkcs11.CKR_KEY_HANDLE_INVALID:
			return tacerr.Wrap(tacerr.HSMKeyNotFound, err, "%s: the key is no longer on the token", what)
		case pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED, pkcs11.CKR_USER_NOT_LOGGED_IN,
			pkcs11.CKR_SESSION_COUNT, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED:
			return tacerr.Wrap(tacerr.HSMUnavailable, err, "%s: the HSM session was lost; retry", what)
		}
		return tacerr.Wrap(tacerr.HSMDeviceError, err, "%s: the HSM reported an error", what)
	}
	if errors.Is(err, errBroken) {
		return tacerr.Wrap(tacerr.HSMUnavailable, err, "%s", what)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return tacerr.Wrap(tacerr.HSMUnavailable, err, "%s: no free HSM session within %s; raise hsm.sessions or lower the load", what, poolWait)
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "could not find PKCS#11 token"):
		return tacerr.Wrap(tacerr.HSMTokenAbsent, err, "%s: no token with that %s; list tokens with `softhsm2-util --show-slots` or the vendor tool", what, "label/serial")
	case strings.Contains(msg, "failed to open module"), strings.Contains(msg, "failed to initialize module"):
		// A person must fix the configuration: not retryable.
		e := tacerr.Wrap(tacerr.InvalidConfig, err, "%s: cannot load the PKCS#11 module; check hsm.module", what)
		e.Field = "hsm.module"
		return e
	}
	return tacerr.Wrap(tacerr.HSMDeviceError, err, "%s", what)
}
