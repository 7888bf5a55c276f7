package hsm_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/tacerr"
)

// childOpenEnv makes the test binary run openChild: hsm.Open in a process
// of its own, so that SoftHSM2 reads the token directory afresh (it does
// only when the module is loaded).
const childOpenEnv = "TACLINE_HSM_TEST_CHILD_OPEN"

// openResult is what openChild prints.
type openResult struct {
	Code     string   `json:"code,omitempty"`
	Err      string   `json:"err,omitempty"`
	Restored []string `json:"restored,omitempty"`
}

func openChild(cfgJSON string) int {
	var cfg hsm.Config
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 3
	}
	var res openResult
	tok, err := hsm.Open(cfg)
	if err != nil {
		res.Code, res.Err = string(tacerr.CodeOf(err)), err.Error()
	} else {
		res.Restored = tok.Restored()
		_ = tok.Close()
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 3
	}
	return 0
}

func openInChild(t *testing.T, cfg hsm.Config) openResult {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childOpenEnv+"="+string(b))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var res openResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("child output: %v\n%s", err, out)
	}
	return res
}

// TestEmptiedTokenFile: SoftHSM2 rewrites token.object in place at every
// login (truncate, then write), so a process killed in between leaves it
// empty and the token disappears. A development token's file is put back
// from the copy tacline keeps; any other is named in the error.
func TestEmptiedTokenFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg, err := hsm.InitDev(dir, "", "")
	if err != nil {
		t.Fatal(err)
	}
	objs, _ := filepath.Glob(filepath.Join(dir, "tokens", "*", "token.object"))
	if len(objs) != 1 {
		t.Fatalf("token files: %q", objs)
	}
	obj := objs[0]
	backup := filepath.Join(dir, "token-backup", filepath.Base(filepath.Dir(obj)), "token.object")
	want, err := os.ReadFile(obj)
	if err != nil || len(want) == 0 {
		t.Fatalf("token file: %d bytes, %v", len(want), err)
	}
	if got, err := os.ReadFile(backup); err != nil || string(got) != string(want) {
		t.Fatalf("InitDev kept no copy of the token file (%v)", err)
	}

	if res := openInChild(t, cfg); res.Err != "" || len(res.Restored) != 0 {
		t.Fatalf("open of a whole token = %+v", res)
	}
	empty := func() {
		t.Helper()
		if err := os.Truncate(obj, 0); err != nil {
			t.Fatal(err)
		}
	}

	// Emptied, as by a kill during a login: the copy is put back.
	empty()
	res := openInChild(t, cfg)
	if res.Err != "" || !slices.Equal(res.Restored, []string{obj}) {
		t.Fatalf("open after the token file was emptied = %+v, want it restored", res)
	}
	if fi, err := os.Stat(obj); err != nil || fi.Size() == 0 {
		t.Fatalf("token file after the restore: %v, %v", fi, err)
	}

	// Without a copy (any token that is not a development one): the error
	// names the empty file.
	if err := os.RemoveAll(filepath.Join(dir, "token-backup")); err != nil {
		t.Fatal(err)
	}
	empty()
	res = openInChild(t, cfg)
	if res.Code != string(tacerr.HSMTokenAbsent) || !strings.Contains(res.Err, obj+" is empty") {
		t.Fatalf("open of an emptied token without a copy = %+v, want hsm_token_not_present naming %s", res, obj)
	}
}
