package devenv

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// TestSetupWaitsForAnotherEnvironmentsToken: an environment set up while
// another's token is open in the same process (tests in parallel) waits for
// it instead of failing on SoftHSM2's one configuration per process.
func TestSetupWaitsForAnotherEnvironmentsToken(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a, err := Setup(ctx, Options{Dir: filepath.Join(t.TempDir(), "a"), Stations: 1})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := openToken(a.Config.HSM)
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan struct{}, 1)
	tokenWait = func() { waiting <- struct{}{} }
	defer func() { tokenWait = func() {} }()
	done := make(chan error, 1)
	go func() {
		_, err := Setup(ctx, Options{Dir: filepath.Join(t.TempDir(), "b"), Stations: 1})
		done <- err
	}()
	select {
	case <-waiting:
	case err := <-done:
		t.Fatalf("B's set-up ended while A's token was open (%v), want it to wait", err)
	}
	if err := tok.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("B's set-up after A's token closed: %v", err)
	}
}
