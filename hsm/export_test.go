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
