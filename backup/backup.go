// Package backup makes and restores backup sets of the ledger, and proves
// a restored ledger before it is used.
//
// A backup set is a directory: the ledger copy (store.Backup: SQLite
// VACUUM INTO or pg_dump, taken while the server provisions), the newest
// signed audit checkpoint the copy contains, the log's verifier key, the
// published checkpoint of that moment (audit.published_checkpoint, read
// before the copy so it never runs ahead of it) and manifest.json with the
// SHA-256 of every file, written last: a set without a manifest is
// incomplete.
//
// Restore promises that a ledger is put in place only if every file
// matches the manifest, `ledger check` finds no violation, the restored
// audit log recomputes to its head, and it extends every checkpoint known
// (the set's own, the set's published one, the target's published file,
// and any the operator supplies), each verified with the log key. A
// ledger older than a known checkpoint is refused: issuing from its old
// pool high-water marks would give IMEIs already on devices to other
// devices. With AllowRollback it is restored anyway, and the newest known
// checkpoint is written to the published file so that `tacline serve`
// refuses to start until an operator runs Acknowledge.
package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"syscall"
	"time"

	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/config"
	"github.com/tacline/tacline/internal/atomicfile"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// Names of the files of a backup set.
const (
	ManifestFile   = "manifest.json"
	CheckpointFile = "checkpoint"
	LogKeyFile     = "log.pub"
	PublishedFile  = "published-checkpoint"
)

// Manifest describes a backup set.
type Manifest struct {
	Format    string    `json:"format"` // "tacline-backup"
	Version   int       `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	Dialect   string    `json:"dialect"`
	Ledger    string    `json:"ledger"` // the ledger copy's file name
	Tacline   string    `json:"tacline_version,omitempty"`
	// CheckpointSize is the size of the newest signed checkpoint in the
	// copy (0: none was signed yet).
	CheckpointSize int64 `json:"checkpoint_size"`
	// PublishedSize is the size of the published checkpoint copied into
	// the set (0: none).
	PublishedSize int64       `json:"published_size"`
	Files         []FileEntry `json:"files"`
}

// FileEntry is one file of the set.
type FileEntry struct {
	Name   string `json:"name"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

const format = "tacline-backup"

// Create writes a backup set of cfg's ledger into dir (created; it must
// not exist or be empty). It works while servers use the ledger.
// progress, when not nil, follows a SQLite ledger's copy (store.DB.Backup).
//
// A failed backup leaves dir as it found it: it removes the files it
// wrote and the directories it created (dir and missing parents). On
// SQLite the space check comes before any file of the set is written: the
// files read before the copy (the published checkpoint, the newest
// checkpoint and its key) are kept in memory and written after it.
func Create(ctx context.Context, cfg *config.File, dir, version string, progress func(store.CopyProgress)) (_ *Manifest, err error) {
	var written []string
	created, err := emptyDir(dir)
	defer func() {
		if err != nil {
			err = unwrite(err, dir, created, written)
		}
	}()
	if err != nil {
		return nil, err
	}
	write := func(name string, data []byte) error {
		written = append(written, name)
		return writeSetFile(dir, name, data)
	}
	m := &Manifest{Format: format, Version: 1, CreatedAt: time.Now().UTC().Truncate(time.Second), Dialect: string(cfg.Database.Driver), Tacline: version}
	// The published checkpoint first: it is written only after its
	// checkpoint committed, so the copy below contains it.
	var published []byte
	if p := cfg.Audit.PublishedCheckpoint; p != "" {
		if published, err = audit.ReadPublished(p); err != nil {
			return nil, err
		}
	}
	db, err := store.Open(ctx, cfg.Database)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	// The newest checkpoint before the copy: checkpoints are never
	// deleted, so the copy contains it.
	cp, err := audit.LatestCheckpoint(ctx, db)
	signed := err == nil
	switch {
	case tacerr.Is(err, tacerr.NotFound):
	case err != nil:
		return nil, err
	default:
		m.CheckpointSize = cp.Size
	}
	if m.Ledger, err = db.Backup(ctx, dir, cfg.Database.DSN, progress); err != nil {
		return nil, err // Backup removed its partial copy
	}
	written = append(written, m.Ledger)
	if published != nil {
		if err := write(PublishedFile, published); err != nil {
			return nil, err
		}
	}
	if signed {
		if err := write(CheckpointFile, cp.Note); err != nil {
			return nil, err
		}
		if err := write(LogKeyFile, []byte(cp.VerifierKey+"\n")); err != nil {
			return nil, err
		}
	}
	if published != nil && cp.VerifierKey != "" {
		v, err := audit.ParseVerifierKey(cp.VerifierKey)
		if err != nil {
			return nil, err
		}
		pc, err := audit.OpenCheckpoint(published, v)
		if err != nil {
			return nil, tacerr.Wrap(tacerr.LedgerInvariant, err, "published audit checkpoint %s", cfg.Audit.PublishedCheckpoint)
		}
		m.PublishedSize = pc.Size
	}
	if m.Files, err = hashFiles(dir); err != nil {
		return nil, err
	}
	written = append(written, ManifestFile)
	if err := writeManifest(dir, m); err != nil {
		return nil, err
	}
	return m, nil
}

// writeFileAtomic is atomicfile.Write; tests replace it to fill the disk
// after the copy.
var writeFileAtomic = atomicfile.Write

// writeSetFile writes one of the small files of a backup set (the
// checkpoints, the log key, the manifest) after the ledger's copy; a full
// disk is insufficient_space, as it is for the copy.
func writeSetFile(dir, name string, data []byte) error {
	if err := writeFileAtomic(filepath.Join(dir, name), data, 0o600); err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			return tacerr.Wrap(tacerr.InsufficientSpace, err, "write %s of the backup set in %s: the filesystem is full; free space there or give --to a directory on a larger one", name, dir)
		}
		return tacerr.Wrap(tacerr.Unavailable, err, "write %s of the backup set in %s", name, dir)
	}
	return nil
}

// emptyDir makes sure dir is an empty directory, and returns the
// directories it created (dir and the missing ones above it, innermost
// first).
func emptyDir(dir string) (created []string, err error) {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) || d == filepath.Dir(d) {
			break
		}
		created = append(created, d)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, tacerr.Wrap(tacerr.InvalidInput, err, "create backup directory %s", dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return created, tacerr.Wrap(tacerr.InvalidInput, err, "read backup directory %s", dir)
	}
	if len(ents) > 0 {
		return nil, tacerr.Field(tacerr.InvalidInput, "to", "%s is not empty: give a new directory for each backup set", dir)
	}
	return created, nil
}

// unwrite undoes a failed Create: it removes the files names of dir
// (those it may have written) and the directories Create created, and
// returns err, with what could not be removed.
func unwrite(err error, dir string, created, names []string) error {
	for _, n := range names {
		if rerr := os.Remove(filepath.Join(dir, n)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, tacerr.Wrap(tacerr.Unavailable, rerr, "remove %s of the failed backup set: remove it by hand", n))
		}
	}
	for _, d := range created {
		if rerr := os.Remove(d); rerr != nil {
			return errors.Join(err, tacerr.Wrap(tacerr.Unavailable, rerr, "remove the directory %s the failed backup created: remove it by hand", d))
		}
	}
	return err
}

func hashFiles(dir string) ([]FileEntry, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Unavailable, err, "read the backup set %s to hash it", dir)
	}
	var out []FileEntry
	for _, e := range ents {
		if e.Name() == ManifestFile {
			continue
		}
		if !e.Type().IsRegular() {
			return nil, tacerr.New(tacerr.InvalidInput, "backup set %s holds %s, which is not a regular file", dir, e.Name())
		}
		fe, err := hashFile(dir, e.Name())
		if err != nil {
			return nil, tacerr.Wrap(tacerr.Unavailable, err, "read %s of the backup set in %s to hash it", e.Name(), dir)
		}
		out = append(out, fe)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func hashFile(dir, name string) (FileEntry, error) {
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return FileEntry{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return FileEntry{}, err
	}
	return FileEntry{Name: name, Bytes: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

func writeManifest(dir string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeSetFile(dir, ManifestFile, append(b, '\n'))
}

// ReadManifest reads dir's manifest and checks every file against it: the
// same names, sizes and SHA-256 hashes, nothing missing, nothing extra.
func ReadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, tacerr.New(tacerr.InvalidInput, "%s has no %s: not a backup set, or an incomplete one", dir, ManifestFile)
	}
	if err != nil {
		return nil, tacerr.Wrap(tacerr.InvalidInput, err, "read %s", ManifestFile)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, tacerr.Wrap(tacerr.InvalidInput, err, "%s in %s", ManifestFile, dir)
	}
	if m.Format != format || m.Version != 1 {
		return nil, tacerr.New(tacerr.InvalidInput, "%s: format %q version %d is not a tacline backup set this version reads", dir, m.Format, m.Version)
	}
	got, err := hashFiles(dir)
	if err != nil {
		return nil, err
	}
	want := map[string]FileEntry{}
	for _, f := range m.Files {
		want[f.Name] = f
	}
	for _, g := range got {
		w, ok := want[g.Name]
		switch {
		case !ok:
			return nil, tacerr.New(tacerr.LedgerInvariant, "backup set %s: %s is not in the manifest", dir, g.Name)
		case w != g:
			return nil, tacerr.New(tacerr.LedgerInvariant, "backup set %s: %s does not match the manifest (%d bytes, sha256 %s; manifest: %d bytes, %s): the copy is damaged", dir, g.Name, g.Bytes, g.SHA256, w.Bytes, w.SHA256)
		}
		delete(want, g.Name)
	}
	for name := range want {
		return nil, tacerr.New(tacerr.LedgerInvariant, "backup set %s: %s is missing", dir, name)
	}
	if m.Ledger == "" {
		return nil, tacerr.New(tacerr.InvalidInput, "backup set %s names no ledger file", dir)
	}
	// The ledger is read only as one of the files just checked: never a
	// path out of the set, nor a file the manifest does not hash.
	if !slices.ContainsFunc(m.Files, func(f FileEntry) bool { return f.Name == m.Ledger }) {
		return nil, tacerr.New(tacerr.InvalidInput, "backup set %s: its ledger %q is not one of its files: the manifest was altered, or the set is not one tacline made", dir, m.Ledger)
	}
	return &m, nil
}

func (m *Manifest) String() string {
	return fmt.Sprintf("%s backup of %s, %d files, checkpoint %d", m.Dialect, m.CreatedAt.Format(time.RFC3339), len(m.Files), m.CheckpointSize)
}
