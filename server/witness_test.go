package server_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/server"
	"github.com/tacline/tacline/tacerr"
)

// TestWitnessKeyErrorKeepsItsCode: a witness key (audit.witness_key_label)
// the server cannot load is reported with the HSM's own code, named by the
// setting: a label on an ECDSA key is invalid_config ("not an Ed25519
// key"), a label on no key hsm_key_not_found with the command that makes
// one. server.New re-coded every failure hsm_key_not_found ("make it with
// --generate"), so an HSM that lost its session at start-up
// (hsm_unavailable, retryable) read as a missing key too.
func TestWitnessKeyErrorKeepsItsCode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env, err := devenv.Setup(ctx, devenv.Options{Dir: filepath.Join(t.TempDir(), "env"), Stations: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, label string
		want        tacerr.Code
		says        string
	}{
		{name: "ECDSA key", label: env.Config.Audit.KeyLabel, want: tacerr.InvalidConfig, says: "is not an Ed25519 key"},
		{name: "no key", label: "no-such-witness", want: tacerr.HSMKeyNotFound, says: "tacline audit witness-key --generate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := *env.Config
			cfg.Server.Listen = "127.0.0.1:0"
			cfg.Audit.WitnessKeyLabel = tc.label
			srv, err := server.New(ctx, &cfg, slog.New(slog.DiscardHandler))
			if err == nil {
				srv.Close()
				t.Fatal("the server started with a witness key it cannot use")
			}
			if !tacerr.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "audit.witness_key_label") {
				t.Fatalf("got %v, want %s saying %q and naming audit.witness_key_label", err, tc.want, tc.says)
			}
		})
	}
}
