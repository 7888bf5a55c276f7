package hsm

import "github.com/ThalesGroup/crypto11"

// DoForTest runs fn as an operation of the token (Token.do: under the read
// lock, with the one-shot recovery), so that a test can inject a PKCS#11
// result that SoftHSM2 cannot produce on demand.
func (t *Token) DoForTest(what string, fn func() error) error {
	return t.do(what, func(*crypto11.Context, uint64) error { return fn() })
}

// AfterKeyGen makes GenerateKey call f between making a key pair and
// reading it back (where SoftHSM2 cannot be made to lose its session).
// Set it before the token is used concurrently.
func (t *Token) AfterKeyGen(f func(label string)) { t.afterKeyGen = f }

// BeforeSafeCheck makes the Ed25519 path call f before it reads a private
// key's safety attributes (CKA_SENSITIVE...): f may lose the session for
// real (C_CloseAllSessions) or return a PKCS#11 error that stands for the
// token's answer. Set it before the token is used concurrently.
func (t *Token) BeforeSafeCheck(f func() error) { t.beforeSafeCheck = f }
