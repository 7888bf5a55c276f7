package audit

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Checkpoint is a signed statement of the log's size and root hash.
type Checkpoint struct {
	Origin string
	Size   int64
	Root   tlog.Hash
	// Note is the signed note (body, blank line, signature lines); empty for
	// an unsigned checkpoint.
	Note []byte
}

// Body returns the C2SP tlog-checkpoint body: origin, size, base64 root, one
// per line.
func (c Checkpoint) Body() string {
	return fmt.Sprintf("%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root[:]))
}

// ParseCheckpoint parses a checkpoint body (not the signed note). It accepts
// exactly the three lines tacline writes: no extension lines.
func ParseCheckpoint(body string) (Checkpoint, error) {
	var c Checkpoint
	lines := strings.Split(body, "\n")
	if len(lines) != 4 || lines[3] != "" {
		return c, fmt.Errorf("checkpoint body must be exactly three lines (origin, size, root hash), each ending in a newline")
	}
	if !validKeyName(lines[0]) {
		return c, fmt.Errorf("checkpoint origin %q is not a valid name", lines[0])
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != lines[1] {
		return c, fmt.Errorf("checkpoint size %q is not a decimal number without sign or leading zeros", lines[1])
	}
	h, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(h) != tlog.HashSize || base64.StdEncoding.EncodeToString(h) != lines[2] {
		return c, fmt.Errorf("checkpoint root hash %q is not the base64 of 32 bytes", lines[2])
	}
	c.Origin, c.Size = lines[0], n
	copy(c.Root[:], h)
	return c, nil
}

// OpenCheckpoint verifies a signed checkpoint note with v and parses it. The
// checkpoint's origin must be v's name.
func OpenCheckpoint(msg []byte, v note.Verifier) (Checkpoint, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		var unknown *note.UnknownVerifierError
		var invalid *note.InvalidSignatureError
		var unverified *note.UnverifiedNoteError
		switch {
		case errors.As(err, &unverified):
			var by []string
			for _, sig := range unverified.Note.UnverifiedSigs {
				by = append(by, fmt.Sprintf("%s+%08x", sig.Name, sig.Hash))
			}
			return Checkpoint{}, fmt.Errorf("checkpoint is not signed by the log key %s (signed by %s)", keyLabel(v), strings.Join(by, ", "))
		case errors.As(err, &unknown):
			return Checkpoint{}, fmt.Errorf("checkpoint is not signed by the log key %s (signed by %s with key id %08x)", keyLabel(v), unknown.Name, unknown.KeyHash)
		case errors.As(err, &invalid):
			return Checkpoint{}, fmt.Errorf("checkpoint signature by %s does not verify: the checkpoint was altered or signed by another key", keyLabel(v))
		case err.Error() == "malformed note":
			return Checkpoint{}, fmt.Errorf("checkpoint is not a well-formed signed note")
		}
		return Checkpoint{}, fmt.Errorf("checkpoint signature: %v", err)
	}
	c, err := ParseCheckpoint(n.Text)
	if err != nil {
		return c, err
	}
	if c.Origin != v.Name() {
		return c, fmt.Errorf("checkpoint origin %q is not the log key's name %q", c.Origin, v.Name())
	}
	c.Note = bytes.Clone(msg)
	return c, nil
}

func keyLabel(v note.Verifier) string { return fmt.Sprintf("%s+%08x", v.Name(), v.KeyHash()) }

// signCheckpoint signs c's body with s.
func signCheckpoint(c Checkpoint, s note.Signer) (Checkpoint, error) {
	msg, err := note.Sign(&note.Note{Text: c.Body()}, s)
	if err != nil {
		return c, err
	}
	c.Note = msg
	return c, nil
}
