package hsm_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/tacerr"
)

// childDirEnv makes the test binary run tokenDirChild instead of the tests.
const childDirEnv = "TACLINE_HSM_TEST_CHILD_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childDirEnv); dir != "" {
		os.Exit(tokenDirChild(dir))
	}
	if cfg := os.Getenv(childOpenEnv); cfg != "" {
		os.Exit(openChild(cfg))
	}
	os.Exit(m.Run())
}

// childStep is what the child process observed at one step.
type childStep struct {
	Name       string `json:"name"`
	Code       string `json:"code,omitempty"`
	Retryable  bool   `json:"retryable,omitempty"`
	Err        string `json:"err,omitempty"`
	HealthOK   bool   `json:"health_ok"`
	HealthErr  string `json:"health_err,omitempty"`
	Recoveries uint64 `json:"recoveries"`
}

// tokenDirChild runs in a process of its own, because SoftHSM2 re-reads its
// token directory only when the last context of the process is closed and
// the library is initialised again: a development token is made under dir,
// a key signs, the token directory is removed, signatures are tried, the
// directory is put back, and signatures are tried again. It prints one JSON
// array of steps.
func tokenDirChild(dir string) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 3
	}
	cfg, err := hsm.InitDev(dir, "", "")
	if err != nil {
		return fail(err)
	}
	tok, err := hsm.Open(cfg)
	if err != nil {
		return fail(err)
	}
	defer tok.Close()
	if _, err := tok.GenerateKey("ca", hsm.ECP256); err != nil {
		return fail(err)
	}
	s, err := tok.Signer("ca")
	if err != nil {
		return fail(err)
	}
	var steps []childStep
	step := func(name string) {
		st := childStep{Name: name}
		digest := sha256.Sum256([]byte(name))
		sig, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err == nil && !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), digest[:], sig) {
			err = errors.New("signature does not verify")
		}
		if err != nil {
			st.Err = err.Error()
			st.Code = string(tacerr.CodeOf(err))
			st.Retryable = tacerr.IsRetryable(err)
		}
		h := tok.Health(context.Background())
		st.HealthOK, st.HealthErr = h.OK, h.Err
		st.Recoveries = tok.Recoveries()
		steps = append(steps, st)
	}
	tokens := filepath.Join(dir, "tokens")
	step("before")
	if err := os.Rename(tokens, tokens+".away"); err != nil {
		return fail(err)
	}
	step("removed")
	step("still-removed")
	if err := os.Rename(tokens+".away", tokens); err != nil {
		return fail(err)
	}
	step("restored")
	step("after")
	if err := json.NewEncoder(os.Stdout).Encode(steps); err != nil {
		return fail(err)
	}
	return 0
}

// TestTokenDirRemoved removes the token directory under a running process
// (a child: see tokenDirChild) and puts it back.
func TestTokenDirRemoved(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childDirEnv+"="+t.TempDir())
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var steps []childStep
	if err := json.Unmarshal(out, &steps); err != nil {
		t.Fatalf("child output: %v\n%s", err, out)
	}
	byName := map[string]childStep{}
	for _, s := range steps {
		byName[s.Name] = s
		t.Logf("%+v", s)
	}
	tests := []struct {
		name   string
		wantOK bool
	}{
		{name: "before", wantOK: true},
		{name: "removed", wantOK: false},
		{name: "still-removed", wantOK: false},
		{name: "restored", wantOK: true},
		{name: "after", wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, ok := byName[tt.name]
			if !ok {
				t.Fatal("step missing")
			}
			if tt.wantOK {
				if s.Err != "" || !s.HealthOK {
					t.Fatalf("want a verified signature and healthy token, got %+v", s)
				}
				return
			}
			if s.Code != string(tacerr.HSMUnavailable) || !s.Retryable || s.HealthOK || s.HealthErr == "" {
				t.Fatalf("want hsm_unavailable (retryable) and unhealthy, got %+v", s)
			}
		})
	}
	if r := byName["after"].Recoveries; r < 2 {
		t.Errorf("recoveries = %d, want at least 2 (the failed one and the one that brought the token back)", r)
	}
}
