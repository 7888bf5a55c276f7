package server_test

import (
	"context"
	"testing"

	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/server"
)

// serve runs env's server in this process until the test ends and
// returns it with its URL; stopping it with an error fails the test.
func serve(ctx context.Context, t *testing.T, env *devenv.Env) (*server.Server, string) {
	t.Helper()
	srv, url, stop, err := devenv.ServeInProcess(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("stop the server: %v", err)
		}
	})
	return srv, url
}
