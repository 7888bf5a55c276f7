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

// BeforeKeyRead makes the Ed25519 path call f before it reads a private
// key's safety attributes (CKA_SENSITIVE...; what is "safety") or a public
// key's CKA_EC_POINT (what is "public"): f may lose the session for real
// (C_CloseAllSessions) or return a PKCS#11 error that stands for the
// token's answer. Set it before the token is used concurrently.
func (t *Token) BeforeKeyRead(f func(what string) error) { t.beforeRead = f }
