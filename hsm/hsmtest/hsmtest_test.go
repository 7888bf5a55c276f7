package hsmtest_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/hsm/hsmtest"
)

// TestParallelTokens: parallel tests get distinct tokens in one shared
// SoftHSM2 directory, see only their own keys, and the directory is removed
// when the last of them ends.
func TestParallelTokens(t *testing.T) {
	cfgs := make(chan hsm.Config, 6)
	t.Run("group", func(t *testing.T) {
		// Hold a token for the whole group: parallel subtests may run in
		// waves (-parallel defaults to GOMAXPROCS), and without a token
		// alive between waves the shared directory would be removed and a
		// new one made, as designed.
		hsmtest.NewToken(t)
		for i := range 6 {
			t.Run(string(rune('a'+i)), func(t *testing.T) {
				t.Parallel()
				cfg := hsmtest.NewToken(t)
				cfgs <- cfg
				tok := hsmtest.Open(t, cfg)
				// The same key label on every token: no collision across tokens.
				if _, err := tok.GenerateKey("same", hsm.ECP256); err != nil {
					t.Fatal(err)
				}
				keys, err := tok.Keys()
				if err != nil || len(keys) != 1 {
					t.Fatalf("Keys = %v, %v; want only this test's key", keys, err)
				}
				if _, err := os.Stat(filepath.Join(filepath.Dir(cfg.SoftHSMConf), "tokens")); err != nil {
					t.Fatalf("shared token directory: %v", err)
				}
			})
		}
	})
	close(cfgs)
	seen := map[string]bool{}
	var conf string
	for cfg := range cfgs {
		if seen[cfg.TokenLabel] {
			t.Fatalf("label %s handed out twice", cfg.TokenLabel)
		}
		seen[cfg.TokenLabel] = true
		if conf != "" && cfg.SoftHSMConf != conf {
			t.Fatalf("tokens in different directories: %s, %s", conf, cfg.SoftHSMConf)
		}
		conf = cfg.SoftHSMConf
	}
	if len(seen) != 6 {
		t.Fatalf("%d tokens, want 6", len(seen))
	}
	if conf == "" {
		t.Fatal("no SoftHSMConf in the configs")
	}
	if _, err := os.Stat(filepath.Dir(conf)); !os.IsNotExist(err) {
		t.Fatalf("shared directory %s still there after the last test: %v", filepath.Dir(conf), err)
	}
}
