package audit

import (
	"bytes"
	"crypto"
	"io"
	"strings"
	"testing"

	"github.com/tacline/tacline/tacerr"

	tdnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func TestNoteInteropWithTransparencyDevFormats(t *testing.T) {
	k := newKey(t)
	s, err := NewNoteSigner(testOrigin, k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := signCheckpoint(Checkpoint{Origin: testOrigin, Size: 42, Root: tlog.RecordHash([]byte("x"))}, s)
	if err != nil {
		t.Fatal(err)
	}
	vkey := s.Verifier().Key()
	// an independent implementation accepts our key string, key id and signature
	tv, err := tdnote.NewECDSAVerifier(vkey)
	if err != nil {
		t.Fatalf("transparency-dev rejects our verifier key %q: %v", vkey, err)
	}
	n, err := note.Open(c.Note, note.VerifierList(tv))
	if err != nil {
		t.Fatalf("transparency-dev verifier rejects our checkpoint: %v", err)
	}
	if n.Text != c.Body() {
		t.Fatalf("note text %q", n.Text)
	}
	// and our verifier accepts what theirs accepts, and rejects a change
	v, err := ParseVerifierKey(vkey)
	if err != nil {
		t.Fatal(err)
	}
	if v.KeyHash() != tv.KeyHash() || v.Name() != tv.Name() {
		t.Fatalf("key id %08x/%s, transparency-dev %08x/%s", v.KeyHash(), v.Name(), tv.KeyHash(), tv.Name())
	}
	got, err := OpenCheckpoint(c.Note, v)
	if err != nil || got.Size != 42 {
		t.Fatalf("OpenCheckpoint: %+v, %v", got, err)
	}
	bad := bytes.Replace(c.Note, []byte("\n42\n"), []byte("\n43\n"), 1)
	if _, err := note.Open(bad, note.VerifierList(tv)); err == nil {
		t.Fatal("transparency-dev verifier accepts an altered checkpoint")
	}
}

func TestOpenCheckpointErrors(t *testing.T) {
	s, _ := NewNoteSigner(testOrigin, newKey(t))
	other, _ := NewNoteSigner(testOrigin, newKey(t))
	otherName, _ := NewNoteSigner("other.test/log", newKey(t))
	cp := Checkpoint{Origin: testOrigin, Size: 7, Root: tlog.RecordHash(nil)}
	good, _ := signCheckpoint(cp, s)
	byOther, _ := signCheckpoint(cp, other)
	wrongOrigin, _ := signCheckpoint(Checkpoint{Origin: "elsewhere", Size: 7}, s)
	// same key id prefix as s but the body changed
	altered := bytes.Replace(good.Note, []byte("\n7\n"), []byte("\n8\n"), 1)
	byOtherName, _ := signCheckpoint(cp, otherName)
	tests := []struct {
		name string
		msg  []byte
		want string
	}{
		{"good", good.Note, ""},
		{"other key", byOther.Note, "not signed by the log key"},
		{"other name", byOtherName.Note, "not signed by the log key"},
		{"altered", altered, "does not verify"},
		{"garbage", []byte("hello"), "well-formed"},
		{"origin differs", wrongOrigin.Note, "origin"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := OpenCheckpoint(tc.msg, s.Verifier())
			checkErr(t, err, tc.want)
		})
	}
}

func TestParseVerifierKeyErrors(t *testing.T) {
	s, _ := NewNoteSigner(testOrigin, newKey(t))
	good := s.Verifier().Key()
	name, rest, _ := strings.Cut(good, "+")
	_, b64, _ := strings.Cut(rest, "+")
	tests := []struct {
		name string
		key  string
		want string
	}{
		{"good", good, ""},
		{"good with newline", good + "\n", ""},
		{"two parts", name + "+abc", "three"},
		{"bad id", name + "+zzzzzzzz+" + b64, "8 hex"},
		{"wrong id", name + "+00000000+" + b64, "does not match"},
		{"bad base64", name + "+00000000+!!", "base64"},
		{"ed25519 type", name + "+00000000+AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "0x01"},
		{"bad name", "a b" + strings.TrimPrefix(good, name), "name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseVerifierKey(tc.key)
			checkErr(t, err, tc.want)
		})
	}
}

func FuzzParseVerifierKey(f *testing.F) {
	s, _ := NewNoteSigner(testOrigin, newKey(f))
	f.Add(s.Verifier().Key())
	f.Add("a+b+c")
	f.Add("")
	f.Fuzz(func(t *testing.T, key string) {
		v, err := ParseVerifierKey(key)
		if err != nil {
			return
		}
		if again := v.Key(); again != strings.TrimSpace(key) {
			t.Fatalf("key %q re-encodes as %q", key, again)
		}
	})
}

func TestParseCheckpoint(t *testing.T) {
	root := tlog.RecordHash(nil)
	good := Checkpoint{Origin: testOrigin, Size: 10, Root: root}.Body()
	tests := []struct {
		name string
		body string
		want string
	}{
		{"good", good, ""},
		{"extension line", good + "ext\n", "three lines"},
		{"no final newline", strings.TrimSuffix(good, "\n"), "three lines"},
		{"leading zero", strings.Replace(good, "\n10\n", "\n010\n", 1), "leading zeros"},
		{"negative", strings.Replace(good, "\n10\n", "\n-1\n", 1), "size"},
		{"short hash", testOrigin + "\n10\nAAAA\n", "32 bytes"},
		{"bad origin", strings.Replace(good, testOrigin, "a b", 1), "origin"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseCheckpoint(tc.body)
			if tc.want == "" {
				if err != nil || c.Size != 10 || c.Root != root || c.Origin != testOrigin {
					t.Fatalf("%+v, %v", c, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func FuzzParseCheckpoint(f *testing.F) {
	f.Add(Checkpoint{Origin: testOrigin, Size: 10, Root: tlog.RecordHash(nil)}.Body())
	f.Add("o\n0\n\n")
	f.Fuzz(func(t *testing.T, body string) {
		c, err := ParseCheckpoint(body)
		if err != nil {
			return
		}
		if c.Body() != body {
			t.Fatalf("%q re-encodes as %q", body, c.Body())
		}
	})
}

// badSigner signs with another key than the one it presents: a faulty HSM
// or driver, which a real token cannot be made into on demand.
type badSigner struct {
	crypto.Signer
	other crypto.Signer
}

func (b badSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	return b.other.Sign(r, d, o)
}

// TestCheckpointSignatureVerifiedBeforeUse: a checkpoint signature that
// does not verify under the key's public half is refused (HSM error),
// so no checkpoint the log's key does not vouch for is published.
func TestCheckpointSignatureVerifiedBeforeUse(t *testing.T) {
	s, err := NewNoteSigner(testOrigin, badSigner{Signer: newKey(t), other: newKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = signCheckpoint(Checkpoint{Origin: testOrigin, Size: 1, Root: tlog.RecordHash([]byte("x"))}, s)
	if tacerr.CodeOf(err) != tacerr.HSMUnavailable || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("signing with a key that signs for another: %v, want hsm_unavailable saying the signature does not verify", err)
	}
}
