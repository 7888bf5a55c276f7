package devenv

import (
	"sync"

	"github.com/tacline/tacline/hsm"
)

// tokens serializes devenv's HSM sessions inside one process. SoftHSM2
// reads its configuration file (SOFTHSM2_CONF, one per environment) once
// per load of the module, so a process holds the tokens of one environment
// at a time and hsm.Open refuses another's meanwhile (invalid_config);
// tests that set up environments in parallel would otherwise fail by the
// luck of their timing.
var tokens sync.Mutex

// tokenWait is called when a session must wait for another (tests).
var tokenWait = func() {}

// heldToken is a token opened by openToken; Close lets the next
// environment's session begin.
type heldToken struct {
	*hsm.Token
	once sync.Once
}

// openToken opens cfg's token once no other devenv session of this process
// holds one.
func openToken(cfg hsm.Config) (*heldToken, error) {
	if !tokens.TryLock() {
		tokenWait()
		tokens.Lock()
	}
	tok, err := hsm.Open(cfg)
	if err != nil {
		tokens.Unlock()
		return nil, err
	}
	return &heldToken{Token: tok}, nil
}

// Close closes the token (once) and ends the session.
func (t *heldToken) Close() error {
	var err error
	t.once.Do(func() {
		err = t.Token.Close()
		tokens.Unlock()
	})
	return err
}
