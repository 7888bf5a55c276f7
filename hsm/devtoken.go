package hsm

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/tacline/tacline/tacerr"
)

// DevTokenLabel is the label InitDev gives a token when none is named.
const DevTokenLabel = "tacline-dev"

// softHSMModules are where distributions install SoftHSM2's PKCS#11 module.
var softHSMModules = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
	"/opt/homebrew/lib/softhsm/libsofthsm2.so",
}

// SoftHSMModule returns the path of the installed SoftHSM2 module.
func SoftHSMModule() (string, error) {
	for _, p := range softHSMModules {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", tacerr.New(tacerr.HSMUnavailable, "SoftHSM2 is not installed (no libsofthsm2.so in %s); install the softhsm2 package (`make tools` does it and says so)", strings.Join(softHSMModules, ", "))
}

// InitDev makes a SoftHSM2 development token under dir and nothing
// anywhere else: dir/softhsm2.conf (token directory dir/tokens, file object
// store, log level ERROR), the token itself (softhsm2-util --init-token
// --free), the user PIN in dir/pin and the security officer PIN in
// dir/so-pin (both mode 0600). An empty label means DevTokenLabel; an empty
// pin means a random one. The returned Config reads the PIN from dir/pin and
// sets SoftHSMConf. A label already used in dir is refused; on failure
// nothing new is left in dir.
func InitDev(dir, label, pin string) (Config, error) {
	if dir == "" {
		return Config{}, tacerr.Field(tacerr.InvalidInput, "dir", "a directory for the development token is required")
	}
	if label == "" {
		label = DevTokenLabel
	}
	if len(label) > 32 {
		return Config{}, tacerr.Field(tacerr.InvalidInput, "label", "a token label has at most 32 characters, got %d", len(label))
	}
	if pin == "" {
		pin = randomHex(8)
	}
	if len(pin) < 4 || len(pin) > 255 || strings.ContainsAny(pin, "\r\n\x00") {
		return Config{}, tacerr.Field(tacerr.InvalidInput, "pin", "a SoftHSM2 PIN is one line of 4 to 255 characters")
	}
	module, err := SoftHSMModule()
	if err != nil {
		return Config{}, err
	}
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		return Config{}, tacerr.New(tacerr.HSMUnavailable, "softhsm2-util not found in PATH; install the softhsm2 package (`make tools` does it and says so)")
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return Config{}, tacerr.Field(tacerr.InvalidInput, "dir", "%v", err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	tokens := filepath.Join(dir, "tokens")
	pinFile := filepath.Join(dir, "pin")
	soPINFile := filepath.Join(dir, "so-pin")
	if _, err := os.Stat(pinFile); err == nil {
		return Config{}, tacerr.Field(tacerr.Conflict, "dir", "%s already holds a development token (%s exists); use another directory or remove it", dir, pinFile)
	}

	var made []string // undone on failure, newest first
	undo := func() {
		for i := len(made) - 1; i >= 0; i-- {
			_ = os.RemoveAll(made[i])
		}
	}
	// Create the missing directories from the top down, remembering each.
	var missing []string
	for d := tokens; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) || d == filepath.Dir(d) {
			break
		}
		missing = append(missing, d)
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o700); err != nil {
			undo()
			return Config{}, tacerr.Field(tacerr.InvalidInput, "dir", "%v", err)
		}
		made = append(made, missing[i])
	}
	if _, err := os.Stat(conf); errors.Is(err, os.ErrNotExist) {
		text := fmt.Sprintf("# SoftHSM2 configuration for tacline development tokens (tacline hsm init-dev)\ndirectories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			undo()
			return Config{}, tacerr.Field(tacerr.InvalidInput, "dir", "%v", err)
		}
		made = append(made, conf)
	}
	env := append(os.Environ(), "SOFTHSM2_CONF="+conf)
	run := func(args ...string) (string, error) {
		cmd := exec.Command(util, args...)
		cmd.Env = env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	slots, err := run("--show-slots")
	if err != nil {
		undo()
		return Config{}, tacerr.Wrap(tacerr.HSMDeviceError, err, "softhsm2-util --show-slots: %s", strings.TrimSpace(slots))
	}
	for _, l := range ParseSlotLabels(slots) {
		if l == label {
			undo()
			return Config{}, tacerr.Field(tacerr.Conflict, "label", "a token labelled %q already exists in %s; choose another label", label, tokens)
		}
	}
	soPIN := randomHex(8)
	out, err := run("--init-token", "--free", "--label", label, "--so-pin", soPIN, "--pin", pin)
	if err != nil {
		undo()
		out = strings.ReplaceAll(strings.ReplaceAll(out, soPIN, "<redacted>"), pin, "<redacted>")
		return Config{}, tacerr.Wrap(tacerr.HSMDeviceError, err, "softhsm2-util --init-token: %s", strings.TrimSpace(out))
	}
	for _, f := range []struct{ path, value string }{{pinFile, pin}, {soPINFile, soPIN}} {
		if err := os.WriteFile(f.path, []byte(f.value+"\n"), 0o600); err != nil {
			undo()
			return Config{}, tacerr.Field(tacerr.InvalidInput, "dir", "%v", err)
		}
		made = append(made, f.path)
	}
	// The first copy of the token's file, before any login rewrites it
	// (softhsmfile.go).
	if err := backupSoftHSMTokens(conf); err != nil {
		undo()
		return Config{}, err
	}
	return Config{
		Module:      module,
		TokenLabel:  label,
		PIN:         "file:" + pinFile,
		SoftHSMConf: conf,
	}, nil
}

// ParseSlotLabels returns the token labels in the output of
// `softhsm2-util --show-slots` (lines "    Label:            NAME").
func ParseSlotLabels(out string) []string {
	var labels []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		rest, ok := strings.CutPrefix(line, "Label:")
		if !ok {
			continue
		}
		if l := strings.TrimSpace(rest); l != "" {
			labels = append(labels, l)
		}
	}
	return labels
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
