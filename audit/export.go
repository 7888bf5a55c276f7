package audit

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// Export file format identifiers (manifest.json).
const (
	ExportFormat  = "tacline-audit-export"
	ExportVersion = 1
)

// Names of the entries of an export, in the order they appear.
const (
	entryManifest   = "manifest.json"
	entryLogKey     = "log.pub"
	entryCheckpoint = "checkpoint"
	entryHashes     = "hashes"
	entryProof      = "proof"
	entryEvents     = "events/" // events/<index of the first event, 20 digits>
)

// DefaultChunkEvents is how many events one events/ entry holds at most.
const DefaultChunkEvents = 16384

// maxChunkBytes bounds the bytes of one events/ entry (it is buffered).
const maxChunkBytes = 8 << 20

// Manifest is the first entry of an export.
type Manifest struct {
	Format   string `json:"format"`
	Version  int    `json:"version"`
	Origin   string `json:"origin"`
	FromSize int64  `json:"from_size"`
	ToSize   int64  `json:"to_size"`
}

// ExportOptions chooses the range of an export: the events with indexes
// FromSize to ToSize-1, proven against the signed checkpoint of size ToSize.
type ExportOptions struct {
	FromSize int64
	// ToSize must be the size of a signed checkpoint; 0 means the newest.
	ToSize int64
	// ChunkEvents bounds the events of one events/ entry (0: default).
	ChunkEvents int
}

// ExportStats says what an export holds.
type ExportStats struct {
	FromSize int64 `json:"from_size"`
	ToSize   int64 `json:"to_size"`
	Events   int64 `json:"events"`
	Bytes    int64 `json:"bytes"`
}

// Export writes the events FromSize..ToSize-1 of the log to w as a tar file
// (layout in docs/audit-format.md): the manifest, the log's verifier key,
// the signed checkpoint of size ToSize, the stored hashes of the complete
// subtrees of the tree of size FromSize, the consistency proof from
// FromSize to ToSize, then the events in entries of at most ChunkEvents.
// It streams: memory does not grow with the range.
func Export(ctx context.Context, db *store.DB, w io.Writer, o ExportOptions) (ExportStats, error) {
	var st ExportStats
	var cp StoredCheckpoint
	var err error
	if o.ToSize == 0 {
		cp, err = LatestCheckpoint(ctx, db)
	} else {
		cp, err = CheckpointAt(ctx, db, o.ToSize)
	}
	if err != nil {
		return st, err
	}
	to, from := cp.Size, o.FromSize
	if from < 0 || from > to {
		return st, tacerr.Field(tacerr.InvalidInput, "from-size", "%d is outside the log of size %d: give 0 to %d", from, to, to)
	}
	chunk := o.ChunkEvents
	if chunk <= 0 {
		chunk = DefaultChunkEvents
	}
	r := dbHashReader{ctx, db}
	edge, err := r.ReadHashes(edgeIndexes(from))
	if err != nil {
		return st, err
	}
	var proof tlog.TreeProof
	if from > 0 && from < to {
		if proof, err = tlog.ProveTree(to, from, r); err != nil {
			return st, tacerr.Wrap(tacerr.LedgerInvariant, err, "prove audit tree %d extends %d", to, from)
		}
	}
	cw := &countWriter{w: w}
	tw := tar.NewWriter(cw)
	manifest, _ := json.MarshalIndent(Manifest{Format: ExportFormat, Version: ExportVersion, Origin: cp.Origin, FromSize: from, ToSize: to}, "", "  ")
	var hashes, proofText bytes.Buffer
	for i, x := range edgeIndexes(from) {
		fmt.Fprintf(&hashes, "%d %s\n", x, edge[i])
	}
	for _, h := range proof {
		fmt.Fprintf(&proofText, "%s\n", h)
	}
	for _, e := range []struct {
		name string
		data []byte
	}{
		{entryManifest, append(manifest, '\n')},
		{entryLogKey, []byte(cp.VerifierKey + "\n")},
		{entryCheckpoint, cp.Note},
		{entryHashes, hashes.Bytes()},
		{entryProof, proofText.Bytes()},
	} {
		if err := writeEntry(tw, e.name, e.data); err != nil {
			return st, err
		}
	}
	var buf []byte
	first, next := from, from
	flush := func() error {
		if next == first {
			return nil
		}
		if err := writeEntry(tw, fmt.Sprintf("%s%020d", entryEvents, first), buf); err != nil {
			return err
		}
		buf, first = buf[:0], next
		return nil
	}
	err = db.AuditLeaves(ctx, from, to, func(idx int64, data []byte) error {
		if idx != next {
			return tacerr.New(tacerr.LedgerInvariant, "audit leaf %d is missing from the database", next)
		}
		if int(next-first) >= chunk || len(buf)+4+len(data) > maxChunkBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(data)))
		buf = append(buf, data...)
		next++
		return nil
	})
	if err != nil {
		return st, err
	}
	if next != to {
		return st, tacerr.New(tacerr.LedgerInvariant, "audit leaf %d is missing from the database", next)
	}
	if err := flush(); err != nil {
		return st, err
	}
	if err := tw.Close(); err != nil {
		return st, tacerr.Wrap(tacerr.Unavailable, err, "write export")
	}
	return ExportStats{FromSize: from, ToSize: to, Events: to - from, Bytes: cw.n}, nil
}

var exportTime = time.Unix(0, 0).UTC()

func writeEntry(tw *tar.Writer, name string, data []byte) error {
	h := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: exportTime, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(h); err != nil {
		return tacerr.Wrap(tacerr.Unavailable, err, "write export entry %s", name)
	}
	if _, err := tw.Write(data); err != nil {
		return tacerr.Wrap(tacerr.Unavailable, err, "write export entry %s", name)
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// parseHashLines parses "<stored index> <base64 hash>" lines.
func parseHashLines(data string) ([]int64, []tlog.Hash, error) {
	var idx []int64
	var hs []tlog.Hash
	for i, line := range strings.Split(strings.TrimSuffix(data, "\n"), "\n") {
		if line == "" && i == 0 {
			break
		}
		var x int64
		var b64 string
		if _, err := fmt.Sscanf(line, "%d %s", &x, &b64); err != nil {
			return nil, nil, fmt.Errorf("line %d: want \"<index> <base64 hash>\": %q", i+1, line)
		}
		h, err := tlog.ParseHash(b64)
		if err != nil || fmt.Sprintf("%d %s", x, h) != line {
			return nil, nil, fmt.Errorf("line %d: want \"<index> <base64 hash>\": %q", i+1, line)
		}
		idx, hs = append(idx, x), append(hs, h)
	}
	if !sort.SliceIsSorted(idx, func(i, j int) bool { return idx[i] < idx[j] }) {
		return nil, nil, fmt.Errorf("indexes are not in ascending order")
	}
	return idx, hs, nil
}

// parseProofLines parses one base64 hash per line.
func parseProofLines(data string) (tlog.TreeProof, error) {
	var p tlog.TreeProof
	if data == "" {
		return p, nil
	}
	for i, line := range strings.Split(strings.TrimSuffix(data, "\n"), "\n") {
		h, err := tlog.ParseHash(line)
		if err != nil || base64.StdEncoding.EncodeToString(h[:]) != line {
			return nil, fmt.Errorf("line %d is not a base64 hash: %q", i+1, line)
		}
		p = append(p, h)
	}
	return p, nil
}
