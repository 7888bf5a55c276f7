package server_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/server"
	"github.com/tacline/tacline/tacerr"
)

// TestClientCAMustNotBeADeviceCA: a server whose server.client_ca or
// server.mapped_ca holds the device root or issuing CA refuses to start,
// naming the field: a device certificate would pass as a client.
func TestClientCAMustNotBeADeviceCA(t *testing.T) {
	ctx := context.Background()
	env, err := devenv.Setup(ctx, devenv.Options{Dir: filepath.Join(t.TempDir(), "env"), Stations: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, field string
		set         func(files []string)
	}{
		{"device root as client_ca", "server.client_ca[1]", func(f []string) {
			env.Config.Server.ClientCA = append(env.Config.Server.ClientCA[:1:1], f[0])
		}},
		{"issuing CA as mapped_ca", "server.mapped_ca[0]", func(f []string) {
			env.Config.Server.ClientCA, env.Config.Server.MappedCA = env.Config.Server.ClientCA[:1], []string{f[1]}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.set([]string{filepath.Join(env.Dir, "ca", "root.pem"), filepath.Join(env.Dir, "ca", "issuing.pem")})
			srv, err := server.New(ctx, env.Config, nil)
			if err == nil {
				srv.Close()
			}
			if e, ok := tacerr.As(err); !ok || e.Code != tacerr.InvalidConfig || e.Field != tc.field {
				t.Fatalf("server.New = %v, want invalid_config on %s", err, tc.field)
			}
		})
	}
}
