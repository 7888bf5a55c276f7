// Package stepcatest starts a real step-ca for a test (package stepcadev)
// with the intermediate key in the test's SoftHSM2 token, and stops it when
// the test ends.
package stepcatest

import (
	"context"
	"os"
	"testing"

	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/stepca/stepcadev"
)

// Start starts step-ca with provisioners in a temporary directory; its
// intermediate key is generated in tok (configured by cfg).
func Start(t testing.TB, cfg hsm.Config, tok *hsm.Token, provisioners ...any) *stepcadev.CA {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := stepcadev.Binary(wd, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	c, err := stepcadev.Start(context.Background(), stepcadev.Options{Dir: t.TempDir(), Binary: bin, HSM: cfg, Token: tok, Provisioners: provisioners})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}
