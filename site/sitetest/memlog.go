// Package sitetest holds a site's audit log in memory, for tests of what
// headquarters checks in a site's sync (leaves, inclusion and consistency
// proofs, signed checkpoints) without a site's ledger.
package sitetest

import (
	"fmt"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/site"
	"github.com/tacline/tacline/store"
)

// MemLog is a site's audit log in memory: leaves and tlog's stored
// hashes, checkpoints signed by its signer.
type MemLog struct {
	signer *audit.NoteSigner
	leaves [][]byte
	hashes []tlog.Hash
}

// NewMemLog is an empty log whose checkpoints signer signs.
func NewMemLog(signer *audit.NoteSigner) *MemLog { return &MemLog{signer: signer} }

// Fork is a copy of the log that grows apart from it.
func (l *MemLog) Fork() *MemLog {
	return &MemLog{signer: l.signer, leaves: append([][]byte(nil), l.leaves...), hashes: append([]tlog.Hash(nil), l.hashes...)}
}

// ReadHashes implements tlog.HashReader.
func (l *MemLog) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		out[i] = l.hashes[x]
	}
	return out, nil
}

// Bound appends an imei.bound leaf.
func (l *MemLog) Bound(t testing.TB, m fmt.Stringer, dev, cert string) {
	t.Helper()
	l.Add(t, store.Event{Type: store.EventIMEIBound, Time: time.Now().UTC().Truncate(time.Microsecond), Actor: "S1",
		RequestID: "r-" + dev, IMEIs: []string{m.String()}, DeviceSerial: dev, CertSerial: cert})
}

// Add appends the leaf of e.
func (l *MemLog) Add(t testing.TB, e store.Event) {
	t.Helper()
	leaf, err := audit.EncodeEvent(e)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := tlog.StoredHashes(int64(len(l.leaves)), leaf, l)
	if err != nil {
		t.Fatal(err)
	}
	l.leaves, l.hashes = append(l.leaves, leaf), append(l.hashes, hs...)
}

// Checkpoint signs the log's checkpoint.
func (l *MemLog) Checkpoint(t testing.TB) string {
	t.Helper()
	n := int64(len(l.leaves))
	root, err := tlog.TreeHash(n, l)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := note.Sign(&note.Note{Text: audit.Checkpoint{Origin: l.signer.Name(), Size: n, Root: root}.Body()}, l.signer)
	if err != nil {
		t.Fatal(err)
	}
	return string(msg)
}

// Event is leaf i as shipped site event seq, proved in the log's current
// tree.
func (l *MemLog) Event(t testing.TB, i, seq int64) wire.SiteEvent {
	t.Helper()
	e, err := audit.DecodeEvent(l.leaves[i])
	if err != nil {
		t.Fatal(err)
	}
	pe, _ := store.SiteEventOf(e)
	pe.Seq, pe.LeafIndex = seq, i
	w := site.WireEvent(pe)
	p, err := tlog.ProveRecord(int64(len(l.leaves)), i, l)
	if err != nil {
		t.Fatal(err)
	}
	w.Leaf, w.Proof = l.leaves[i], site.EncodeHashes(p)
	return w
}

// Proof is the consistency proof from size old to the log's size.
func (l *MemLog) Proof(t testing.TB, old int64) []string {
	t.Helper()
	p, err := tlog.ProveTree(int64(len(l.leaves)), old, l)
	if err != nil {
		t.Fatal(err)
	}
	return site.EncodeHashes(p)
}
