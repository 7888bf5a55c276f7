package backup

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tacline/tacline/config"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// A set is read only when every file matches its manifest.
func TestReadManifest(t *testing.T) {
	t.Parallel()
	mk := func(t *testing.T) string {
		dir := t.TempDir()
		for name, data := range map[string]string{"ledger.db": "ledger bytes", CheckpointFile: "note\n"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		files, err := hashFiles(dir)
		if err != nil {
			t.Fatal(err)
		}
		m := &Manifest{Format: format, Version: 1, CreatedAt: time.Now(), Dialect: "sqlite", Ledger: "ledger.db", Files: files}
		if err := writeManifest(dir, m); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	for _, tc := range []struct {
		name   string
		change func(dir string) error
		want   string // in the error; empty: valid
	}{
		{"intact", func(string) error { return nil }, ""},
		{"altered", func(d string) error {
			return os.WriteFile(filepath.Join(d, "ledger.db"), []byte("ledger bytez"), 0o600)
		}, "does not match the manifest"},
		{"missing", func(d string) error { return os.Remove(filepath.Join(d, CheckpointFile)) }, "checkpoint is missing"},
		{"extra", func(d string) error { return os.WriteFile(filepath.Join(d, "x"), nil, 0o600) }, "x is not in the manifest"},
		{"no manifest", func(d string) error { return os.Remove(filepath.Join(d, ManifestFile)) }, "incomplete"},
		{"ledger outside the set", func(d string) error {
			// A manifest naming a ledger file that is not one of the set's
			// (hashed) files: the restore would read an unverified file.
			outside := filepath.Join(filepath.Dir(d), "outside.db")
			if err := os.WriteFile(outside, []byte("other bytes"), 0o600); err != nil {
				return err
			}
			m, err := readManifestFile(d)
			if err != nil {
				return err
			}
			m.Ledger = "../outside.db"
			return writeManifest(d, m)
		}, `ledger "../outside.db" is not one of its files`},
		{"other format", func(d string) error {
			return os.WriteFile(filepath.Join(d, ManifestFile), []byte(`{"format":"tar","version":1}`), 0o600)
		}, "not a tacline backup set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := mk(t)
			if err := tc.change(dir); err != nil {
				t.Fatal(err)
			}
			m, err := ReadManifest(dir)
			if tc.want == "" {
				if err != nil || m.Ledger != "ledger.db" || len(m.Files) != 2 {
					t.Fatalf("ReadManifest = %+v, %v", m, err)
				}
				return
			}
			if _, ok := tacerr.As(err); !ok || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ReadManifest error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// readManifestFile reads dir's manifest without checking the files.
func readManifestFile(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, err
	}
	var m Manifest
	return &m, json.Unmarshal(b, &m)
}

func TestCreateRefusesNonEmptyDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "old"), nil, 0o600)
	if _, err := emptyDir(dir); !tacerr.Is(err, tacerr.InvalidInput) {
		t.Fatalf("emptyDir(non-empty) = %v", err)
	}
}

// TestCreateFailedLeavesDirAsFound: a backup that fails for lack of space
// leaves its directory as it found it: absent (with the parents it
// created) or empty. On SQLite it is refused before it writes anything
// (a real 16 KiB tmpfs, less than the copy's need), the published
// checkpoint included; on PostgreSQL pg_dump fills the tmpfs and the
// partial dump goes. The backups run in TestCreateFailedChild.
func TestCreateFailedLeavesDirAsFound(t *testing.T) {
	t.Parallel()
	for _, d := range []store.Dialect{store.SQLite, store.Postgres} {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			cfg, published := ledgerAndPublished(t, d)
			storetest.SmallFS(t, "TestCreateFailedChild", 16<<10, "TACLINE_BACKUP_DRIVER="+string(d), "TACLINE_BACKUP_LEDGER="+cfg.DSN,
				"TACLINE_BACKUP_PUBLISHED="+published)
		})
	}
}

// TestCreateFailedChild is TestCreateFailedLeavesDirAsFound's child.
func TestCreateFailedChild(t *testing.T) {
	dir := storetest.SmallFSDir(t)
	cfg := &config.File{Database: store.Config{Driver: store.Dialect(os.Getenv("TACLINE_BACKUP_DRIVER")), DSN: os.Getenv("TACLINE_BACKUP_LEDGER")}}
	cfg.Audit.PublishedCheckpoint = os.Getenv("TACLINE_BACKUP_PUBLISHED")
	want := "needs"
	if cfg.Database.Driver == store.Postgres {
		want = "No space left on device"
	}
	for _, to := range []string{filepath.Join(dir, "new", "set"), dir} {
		var copied bool
		_, err := Create(context.Background(), cfg, to, "test", func(store.CopyProgress) { copied = true })
		if !tacerr.Is(err, tacerr.InsufficientSpace) || !strings.Contains(err.Error(), want) {
			t.Fatalf("backup into %s: %v; want insufficient_space saying %q", to, err, want)
		}
		if copied {
			t.Errorf("backup into %s: a copy refused for its space began", to)
		}
		var left []string
		filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
			if p != dir {
				left = append(left, p)
			}
			return err
		})
		if len(left) > 0 {
			t.Fatalf("a failed backup into %s left %v", to, left)
		}
	}
}

// TestCreateFailedAfterTheCopy: a disk that fills after the ledger's copy,
// as the set's small files are written (the published checkpoint, then the
// manifest), is insufficient_space naming the file, and the set is undone
// as for a failed copy: a directory the backup created goes, one that was
// there stays, empty. Not parallel: it replaces writeFileAtomic, which the
// parallel tests use.
func TestCreateFailedAfterTheCopy(t *testing.T) {
	cfg, published := ledgerAndPublished(t, store.SQLite)
	c := &config.File{Database: cfg}
	c.Audit.PublishedCheckpoint = published
	real := writeFileAtomic
	t.Cleanup(func() { writeFileAtomic = real })
	for _, full := range []string{PublishedFile, ManifestFile} {
		// The disk fills at this file: the kernel's ENOSPC, as os.File.Write gives it.
		writeFileAtomic = func(path string, data []byte, perm os.FileMode) error {
			if filepath.Base(path) == full {
				return &fs.PathError{Op: "write", Path: path, Err: syscall.ENOSPC}
			}
			return real(path, data, perm)
		}
		parent := t.TempDir()
		for _, to := range []string{filepath.Join(parent, "new", "set"), parent} {
			_, err := Create(context.Background(), c, to, "test", nil)
			if !tacerr.Is(err, tacerr.InsufficientSpace) || !strings.Contains(err.Error(), full) {
				t.Fatalf("backup into %s, the disk full at %s: %v; want insufficient_space naming %s", to, full, err, full)
			}
			ents, err := os.ReadDir(parent)
			if err != nil {
				t.Fatalf("backup into %s removed the directory that was there: %v", to, err)
			}
			if len(ents) > 0 {
				t.Fatalf("a backup into %s that failed at %s left %v", to, full, ents)
			}
		}
	}
}

// ledgerAndPublished makes a migrated ledger of dialect d and a published
// checkpoint file for a backup to copy.
func ledgerAndPublished(t *testing.T, d store.Dialect) (store.Config, string) {
	t.Helper()
	cfg := storetest.Config(t, d)
	db, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	published := filepath.Join(t.TempDir(), "published")
	if err := os.WriteFile(published, []byte("a published checkpoint\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg, published
}
