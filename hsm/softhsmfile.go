package hsm

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/tacline/tacline/internal/atomicfile"
	"github.com/tacline/tacline/tacerr"
)

// SoftHSM2's file object store keeps a token's label, flags and PIN blobs
// in TOKENDIR/<uuid>/token.object, and every successful C_Login rewrites
// that file in place (Token::loginUser sets the token flags; the object
// file is truncated, then written). A process killed between the two
// leaves an empty token.object, and SoftHSM2 then lists no such token:
// every later start fails with hsm_token_not_present. Every `tacline
// serve` start logs in, so on SoftHSM2 this is a real crash hazard (the
// crash test, which kills servers during their start-up, met it).
//
// tacline cannot make SoftHSM2's write atomic, so it does two things:
//
//   - For a development token (a softhsm2.conf written by InitDev) it keeps
//     a copy of each token's token.object in DIR/token-backup/<uuid>,
//     refreshed after each successful login, and before loading the
//     module puts the copy back over an empty token.object (Token.Restored
//     names the files).
//   - For any other SoftHSM2 token it says what happened: a token that is
//     not found while a token.object in the token directory is empty gives
//     hsm_token_not_present naming that file and the remedy (restore the
//     token directory from its backup; docs/operations.md).

// devConfHeader is the first line of the softhsm2.conf InitDev writes.
const devConfHeader = "# SoftHSM2 configuration for tacline development tokens (tacline hsm init-dev)"

// softHSMStore is what tacline knows of a SoftHSM2 file object store from
// its configuration file.
type softHSMStore struct {
	tokenDir string
	backup   string // DIR/token-backup for a development token, else ""
}

// readSoftHSMConf reads directories.tokendir (and whether InitDev wrote
// the file) from a softhsm2.conf; ok is false if it cannot be read or
// names no token directory.
func readSoftHSMConf(conf string) (softHSMStore, bool) {
	b, err := os.ReadFile(conf)
	if err != nil {
		return softHSMStore{}, false
	}
	var s softHSMStore
	sc := bufio.NewScanner(bytes.NewReader(b))
	first := true
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if first && line == devConfHeader {
			s.backup = filepath.Join(filepath.Dir(conf), "token-backup")
		}
		first = false
		k, v, ok := strings.Cut(line, "=")
		if ok && strings.TrimSpace(k) == "directories.tokendir" {
			s.tokenDir = strings.TrimSpace(v)
		}
	}
	return s, s.tokenDir != ""
}

// tokenObjects returns the token.object path of every token directory.
func (s softHSMStore) tokenObjects() []string {
	ents, err := os.ReadDir(s.tokenDir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, filepath.Join(s.tokenDir, e.Name(), "token.object"))
		}
	}
	return out
}

// backupOf is where the copy of a token's token.object is kept.
func (s softHSMStore) backupOf(tokenObject string) string {
	return filepath.Join(s.backup, filepath.Base(filepath.Dir(tokenObject)), "token.object")
}

// emptyTokenObjects returns the token.object files of conf's store that
// are empty (a login killed mid-write).
func emptyTokenObjects(s softHSMStore) []string {
	var out []string
	for _, p := range s.tokenObjects() {
		if fi, err := os.Stat(p); err == nil && fi.Size() == 0 {
			out = append(out, p)
		}
	}
	return out
}

// restoreSoftHSMTokens puts the kept copy back over every empty
// token.object of a development store (before the module is loaded: SoftHSM2
// reads the token directory at C_Initialize) and returns the files
// restored. A store that is not a development one is left alone.
func restoreSoftHSMTokens(conf string) ([]string, error) {
	s, ok := readSoftHSMConf(conf)
	if !ok || s.backup == "" {
		return nil, nil
	}
	var restored []string
	for _, p := range emptyTokenObjects(s) {
		b, err := os.ReadFile(s.backupOf(p))
		if errors.Is(err, os.ErrNotExist) || (err == nil && len(b) == 0) {
			continue // no copy: Open reports the empty file if the token is not found
		}
		if err != nil {
			return restored, tacerr.Wrap(tacerr.HSMDeviceError, err, "read the copy of SoftHSM2 token file %s", p)
		}
		if err := atomicfile.Write(p, b, 0o600); err != nil {
			return restored, tacerr.Wrap(tacerr.HSMDeviceError, err, "restore SoftHSM2 token file %s from its copy", p)
		}
		restored = append(restored, p)
	}
	return restored, nil
}

// backupSoftHSMTokens refreshes the copies of a development store's
// token.object files (after a successful login, when they are whole). Each
// is read under a shared lock, which waits for a SoftHSM2 writer of
// another process (they lock the file while they rewrite it); an empty one
// is never copied.
func backupSoftHSMTokens(conf string) error {
	s, ok := readSoftHSMConf(conf)
	if !ok || s.backup == "" {
		return nil
	}
	for _, p := range s.tokenObjects() {
		b, err := readLocked(p)
		if err != nil || len(b) == 0 {
			continue
		}
		dst := s.backupOf(p)
		if old, err := os.ReadFile(dst); err == nil && bytes.Equal(old, b) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return tacerr.Wrap(tacerr.HSMDeviceError, err, "keep a copy of SoftHSM2 token file %s", p)
		}
		if err := atomicfile.Write(dst, b, 0o600); err != nil {
			return tacerr.Wrap(tacerr.HSMDeviceError, err, "keep a copy of SoftHSM2 token file %s", p)
		}
	}
	return nil
}

// readLocked reads path whole under a shared fcntl lock.
func readLocked(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	lk := syscall.Flock_t{Type: syscall.F_RDLCK, Whence: io.SeekStart}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLKW, &lk); err != nil {
		return nil, err
	}
	return io.ReadAll(f)
}

// explainMissingToken turns a token that was not found into one that says
// why, when conf's token directory holds an empty token.object.
func explainMissingToken(err error, conf string) error {
	if conf == "" || tacerr.CodeOf(err) != tacerr.HSMTokenAbsent {
		return err
	}
	s, ok := readSoftHSMConf(conf)
	if !ok {
		return err
	}
	empty := emptyTokenObjects(s)
	if len(empty) == 0 {
		return err
	}
	return tacerr.Wrap(tacerr.HSMTokenAbsent, err,
		"SoftHSM2 token file %s is empty: SoftHSM2 rewrites token.object in place at every login, and a process killed during that write leaves it empty, so SoftHSM2 no longer lists the token; restore %s from its backup (docs/operations.md, \"SoftHSM2 token files\")",
		strings.Join(empty, ", "), filepath.Dir(empty[0]))
}
