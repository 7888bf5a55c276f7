package audit

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

// VerifyOptions are what the verifier trusts beyond the export itself.
type VerifyOptions struct {
	// LogKey is the log's verifier key as the verifier knows it. Empty means
	// trust the key inside the export (which only proves the export is
	// self-consistent).
	LogKey string
	// Previous is a signed checkpoint the verifier trusted before; the
	// export must extend it (same tree at its size).
	Previous []byte
}

// Result is the outcome of an offline verification (`tacline audit verify
// --json`).
type Result struct {
	Valid    bool   `json:"valid"`
	Events   int64  `json:"events"`
	FromSize int64  `json:"from_size"`
	TreeSize int64  `json:"tree_size"`
	Root     string `json:"root,omitempty"`
	LogKey   string `json:"log_key,omitempty"`
	Reason   string `json:"reason"`
}

// Verify checks an export offline: every event decodes, the events
// recompute the root of the signed checkpoint (from the stored hashes of
// the tree before the first event), the checkpoint signature verifies with
// the log key, the consistency proof holds, and the tree extends the
// previously trusted checkpoint. It reads r once, front to back, in
// constant memory. Result.Reason says precisely what failed.
func Verify(r io.Reader, o VerifyOptions) Result {
	v := &exportVerifier{tr: tar.NewReader(r)}
	if err := v.run(o); err != nil {
		v.res.Valid = false
		v.res.Reason = err.Error()
		return v.res
	}
	v.res.Valid = true
	return v.res
}

type exportVerifier struct {
	tr  *tar.Reader
	res Result
	buf []byte // reused for events entries
}

// next reads the next entry, which must be called name (or start with it,
// for the events/ prefix); it returns the entry's name and, for small
// entries, its contents.
func (v *exportVerifier) next(name string, limit int64) (string, []byte, error) {
	h, err := v.tr.Next()
	if err == io.EOF {
		return "", nil, io.EOF
	}
	if err != nil {
		return "", nil, fmt.Errorf("export is truncated or not a tar file (reading the entry after %s): %v", name, err)
	}
	if h.Typeflag != tar.TypeReg {
		return "", nil, fmt.Errorf("export entry %s is not a regular file", h.Name)
	}
	if h.Name != name && !(strings.HasSuffix(name, "/") && strings.HasPrefix(h.Name, name)) {
		return "", nil, fmt.Errorf("export entry %q where %s was expected", h.Name, name)
	}
	if h.Size > limit {
		return "", nil, fmt.Errorf("export entry %s is %d bytes, more than %d", h.Name, h.Size, limit)
	}
	v.buf = slices.Grow(v.buf[:0], int(h.Size))[:h.Size]
	data := v.buf
	if _, err := io.ReadFull(v.tr, data); err != nil {
		return "", nil, fmt.Errorf("export is truncated inside entry %s: %v", h.Name, err)
	}
	return h.Name, data, nil
}

func (v *exportVerifier) entry(name string, limit int64) ([]byte, error) {
	_, data, err := v.next(name, limit)
	if err == io.EOF {
		return nil, fmt.Errorf("export is truncated: entry %s is missing", name)
	}
	return data, err
}

func (v *exportVerifier) run(o VerifyOptions) error {
	data, err := v.entry(entryManifest, 64<<10)
	if err != nil {
		return err
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return fmt.Errorf("manifest.json: %v", err)
	}
	if m.Format != ExportFormat || m.Version != ExportVersion {
		return fmt.Errorf("manifest.json: format %q version %d, this tacline reads %q version %d", m.Format, m.Version, ExportFormat, ExportVersion)
	}
	if m.FromSize < 0 || m.FromSize > m.ToSize {
		return fmt.Errorf("manifest.json: from_size %d and to_size %d are not a range", m.FromSize, m.ToSize)
	}
	v.res.FromSize, v.res.TreeSize = m.FromSize, m.ToSize

	// the key: the trusted one if given, else the export's own
	data, err = v.entry(entryLogKey, 64<<10)
	if err != nil {
		return err
	}
	exported, err := ParseVerifierKey(string(data))
	if err != nil {
		return fmt.Errorf("log.pub: %v", err)
	}
	key := exported
	if o.LogKey != "" {
		if key, err = ParseVerifierKey(o.LogKey); err != nil {
			return fmt.Errorf("--log-key: %v", err)
		}
	}
	v.res.LogKey = key.Key()

	data, err = v.entry(entryCheckpoint, 64<<10)
	if err != nil {
		return err
	}
	cp, err := OpenCheckpoint(data, key)
	if err != nil {
		if o.LogKey != "" && exported.Key() != key.Key() {
			return fmt.Errorf("%v; the export's log.pub is %s, not the trusted key", err, keyLabel(exported))
		}
		return err
	}
	if cp.Size != m.ToSize {
		return fmt.Errorf("the signed checkpoint has size %d but manifest.json says to_size %d", cp.Size, m.ToSize)
	}
	v.res.Root = cp.Root.String()

	var prev *Checkpoint
	if len(o.Previous) > 0 {
		p, err := OpenCheckpoint(o.Previous, key)
		if err != nil {
			return fmt.Errorf("previous checkpoint: %v", err)
		}
		switch {
		case p.Size > cp.Size:
			return fmt.Errorf("previous checkpoint has size %d, beyond this export's checkpoint (%d): the log shrank or this export is older than what you trusted", p.Size, cp.Size)
		case p.Size < m.FromSize:
			return fmt.Errorf("previous checkpoint has size %d, before the export's first event %d: export again with --from-size %d or less", p.Size, m.FromSize, p.Size)
		}
		prev = &p
	}

	data, err = v.entry(entryHashes, 64<<10)
	if err != nil {
		return err
	}
	idx, hashes, err := parseHashLines(string(data))
	if err != nil {
		return fmt.Errorf("hashes: %v", err)
	}
	want := edgeIndexes(m.FromSize)
	if fmt.Sprint(idx) != fmt.Sprint(want) {
		return fmt.Errorf("hashes: holds stored hashes %v, a tree of size %d needs exactly %v", idx, m.FromSize, want)
	}
	var t compactTree
	t.init(m.FromSize, hashes)

	data, err = v.entry(entryProof, 64<<10)
	if err != nil {
		return err
	}
	proof, err := parseProofLines(string(data))
	if err != nil {
		return fmt.Errorf("proof: %v", err)
	}
	rootFrom := t.root()
	if m.FromSize > 0 && m.FromSize < m.ToSize {
		if err := tlog.CheckTree(proof, cp.Size, cp.Root, m.FromSize, rootFrom); err != nil {
			return fmt.Errorf("the consistency proof from size %d to the signed checkpoint %d does not verify: the hashes of the tree before the first event are wrong", m.FromSize, cp.Size)
		}
	} else if len(proof) != 0 {
		return fmt.Errorf("proof: a consistency proof from %d to %d must be empty", m.FromSize, m.ToSize)
	} else if m.FromSize == m.ToSize && rootFrom != cp.Root {
		return fmt.Errorf("hashes: the stored hashes give root %s, not the signed checkpoint's %s", rootFrom, cp.Root)
	}
	checkPrev := func() error {
		if prev != nil && t.n == prev.Size && t.root() != prev.Root {
			return fmt.Errorf("fork: the previous checkpoint of size %d has root %s, this export's log has root %s at that size: the log was rewritten", prev.Size, prev.Root, t.root())
		}
		return nil
	}
	if err := checkPrev(); err != nil {
		return err
	}

	for {
		name, data, err := v.next(entryEvents, maxChunkBytes)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		first, err := strconv.ParseInt(strings.TrimPrefix(name, entryEvents), 10, 64)
		if err != nil || name != fmt.Sprintf("%s%020d", entryEvents, first) {
			return fmt.Errorf("export entry %q is not named events/<20-digit index>", name)
		}
		if first != t.n {
			return fmt.Errorf("events entry %s starts at index %d, but the events so far end at %d: events were dropped, inserted or reordered", name, first, t.n)
		}
		for off := 0; off < len(data); {
			if len(data)-off < 4 {
				return fmt.Errorf("event %d in %s: record length cut off", t.n, name)
			}
			n := int(binary.BigEndian.Uint32(data[off:]))
			off += 4
			if n > len(data)-off {
				return fmt.Errorf("event %d in %s: record of %d bytes, only %d left in the entry", t.n, name, n, len(data)-off)
			}
			leaf := data[off : off+n]
			off += n
			if err := CheckLeaf(leaf); err != nil {
				return fmt.Errorf("event %d: %v", t.n, err)
			}
			if t.n >= cp.Size {
				return fmt.Errorf("the export holds more events than the signed checkpoint's %d: an event was inserted", cp.Size)
			}
			t.append(tlog.RecordHash(leaf))
			if err := checkPrev(); err != nil {
				return err
			}
		}
	}
	v.res.Events = t.n - m.FromSize
	if t.n != cp.Size {
		return fmt.Errorf("the export ends after event %d, the signed checkpoint covers %d: %d events are missing (dropped or truncated)", t.n-1, cp.Size, cp.Size-t.n)
	}
	if got := t.root(); got != cp.Root {
		return fmt.Errorf("the root hash recomputed from the events, %s, is not the signed checkpoint's %s: an event was changed, dropped, inserted or reordered", got, cp.Root)
	}
	return nil
}

// compactTree is the right edge of an RFC 6962 tree (the roots of its
// complete subtrees, largest first): enough to append and to hash the tree,
// in memory logarithmic in its size.
type compactTree struct {
	n      int64
	hashes []tlog.Hash
	levels []int
}

// init starts from the tree of size n whose complete subtrees, left to
// right, have the given hashes.
func (t *compactTree) init(n int64, hashes []tlog.Hash) {
	t.n = n
	t.hashes = append(t.hashes[:0], hashes...)
	t.levels = t.levels[:0]
	for l := 62; l >= 0; l-- {
		if (n>>uint(l))&1 == 1 {
			t.levels = append(t.levels, l)
		}
	}
}

func (t *compactTree) append(h tlog.Hash) {
	level := 0
	for k := len(t.levels) - 1; k >= 0 && t.levels[k] == level; k-- {
		h = tlog.NodeHash(t.hashes[k], h)
		t.hashes, t.levels = t.hashes[:k], t.levels[:k]
		level++
	}
	t.hashes, t.levels = append(t.hashes, h), append(t.levels, level)
	t.n++
}

func (t *compactTree) root() tlog.Hash {
	if len(t.hashes) == 0 {
		return emptyRoot
	}
	h := t.hashes[len(t.hashes)-1]
	for k := len(t.hashes) - 2; k >= 0; k-- {
		h = tlog.NodeHash(t.hashes[k], h)
	}
	return h
}
