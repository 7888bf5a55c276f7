package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// dirNames lists the names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestBackupRefusedBeforeWriting: a SQLite backup measures the pages in
// use before it copies, and refuses with insufficient_space naming the
// directory, what it needs and what is free when the filesystem has less,
// writing nothing; the ledger goes on serving. With one byte less than
// the need it is refused, with exactly the need it copies.
func TestBackupRefusedBeforeWriting(t *testing.T) {
	ctx := context.Background()
	cfg := rebuildLedger(t)
	db, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The need: the pages in use at the page size, plus 2 % (at least
	// 64 MiB).
	var pageSize int64
	needOf := func() int64 {
		var pages, freePages int64
		for q, v := range map[string]*int64{"page_count": &pages, "freelist_count": &freePages, "page_size": &pageSize} {
			if err := storetest.Reader(db).Get(v, "PRAGMA "+q); err != nil {
				t.Fatal(err)
			}
		}
		used := (pages - freePages) * pageSize
		if used < 8<<20 {
			t.Fatalf("the ledger has %d bytes in use, want the padding's 8 MiB", used)
		}
		return used + max(used/50, 64<<20)
	}
	need := needOf()
	dir := t.TempDir()
	free := int64(1 << 20)
	defer store.SetRebuildHooks(0, func(d string) (int64, error) {
		if d != dir {
			t.Errorf("free space asked of %s, not the backup's directory %s", d, dir)
		}
		return free, nil
	}, nil)()
	_, err = db.Backup(ctx, dir, cfg.DSN, func(p store.CopyProgress) { t.Errorf("a refused backup reported progress %+v", p) })
	e := wantCode(t, err, tacerr.InsufficientSpace)
	for _, want := range []string{dir, fmt.Sprintf("(%d bytes) free in", need), fmt.Sprintf("(%d bytes) free.", free), "--to", "nothing was written"} {
		if !strings.Contains(e.Message, want) {
			t.Errorf("message %q does not say %q", e.Message, want)
		}
	}
	if names := dirNames(t, dir); len(names) > 0 {
		t.Fatalf("a refused backup wrote %v", names)
	}
	if _, err := reserve(db, "after-refusal", "A", 2); err != nil {
		t.Fatalf("the ledger after a refused backup: %v", err)
	}
	free = needOf() - 1
	if _, err := db.Backup(ctx, dir, cfg.DSN, nil); !tacerr.Is(err, tacerr.InsufficientSpace) || len(dirNames(t, dir)) > 0 {
		t.Fatalf("with one byte less than the need: %v, wrote %v", err, dirNames(t, dir))
	}
	free++
	var last store.CopyProgress
	name, err := db.Backup(ctx, dir, cfg.DSN, func(p store.CopyProgress) { last = p })
	if err != nil || name != "ledger.db" {
		t.Fatalf("backup with the space it asked for: %q, %v", name, err)
	}
	st, err := os.Stat(filepath.Join(dir, name))
	if err != nil || last.Bytes != st.Size() || last.TotalBytes != st.Size() || last.PageSize != pageSize {
		t.Fatalf("the copy's last progress %+v; the file %v, %v", last, st, err)
	}
}

// TestBackupDiskFull: a SQLite backup whose filesystem fills up during
// the copy (a real tmpfs of 2 MiB, smaller than the 8 MiB copy, whose
// free space the backup was told is ample: something else took it after
// the measure) fails with insufficient_space, removes its partial copy
// and leaves the ledger as it was. The copy runs in TestBackupDiskFullChild.
func TestBackupDiskFull(t *testing.T) {
	cfg := rebuildLedger(t)
	want := ledgerState(t, cfg)
	storetest.SmallFS(t, "TestBackupDiskFullChild", 2<<20, "TACLINE_BACKUP_LEDGER="+cfg.DSN)
	if got := ledgerState(t, cfg); got != want {
		t.Fatalf("after a backup that filled its disk: %s; before: %s", got, want)
	}
	db, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := reserve(db, "after-full", "A", 2); err != nil {
		t.Fatalf("the ledger after a backup that filled its disk: %v", err)
	}
}

// TestBackupDiskFullChild is TestBackupDiskFull's child: the backup into
// the small filesystem.
func TestBackupDiskFullChild(t *testing.T) {
	dir := storetest.SmallFSDir(t)
	ctx := context.Background()
	cfg := store.Config{Driver: store.SQLite, DSN: os.Getenv("TACLINE_BACKUP_LEDGER")}
	defer store.SetRebuildHooks(time.Millisecond, func(string) (int64, error) { return 1 << 40, nil }, nil)()
	db, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var grew int64
	_, err = db.Backup(ctx, dir, cfg.DSN, func(p store.CopyProgress) { grew = max(grew, p.Bytes) })
	e := wantCode(t, err, tacerr.InsufficientSpace)
	if !strings.Contains(e.Message, "filled up during the backup's copy") || !strings.Contains(err.Error(), "database or disk is full") {
		t.Fatalf("backup into a full filesystem: %v", err)
	}
	if grew == 0 {
		t.Fatal("the copy reported no bytes written before the disk filled")
	}
	if names := dirNames(t, dir); len(names) > 0 {
		t.Fatalf("a backup that filled its disk left %v", names)
	}
}

// TestBackupPostgresDiskFull: pg_dump failing for lack of space ("No space
// left on device", a real 16 KiB tmpfs) is insufficient_space, and the
// partial dump is removed. The dump runs in TestBackupPostgresDiskFullChild.
func TestBackupPostgresDiskFull(t *testing.T) {
	cfg := storetest.Config(t, store.Postgres)
	db, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	seed(t, db, 0, 999)
	db.Close()
	storetest.SmallFS(t, "TestBackupPostgresDiskFullChild", 16<<10, "TACLINE_BACKUP_LEDGER="+cfg.DSN)
}

// TestBackupPostgresDiskFullChild is TestBackupPostgresDiskFull's child.
func TestBackupPostgresDiskFullChild(t *testing.T) {
	dir := storetest.SmallFSDir(t)
	ctx := context.Background()
	cfg := store.Config{Driver: store.Postgres, DSN: os.Getenv("TACLINE_BACKUP_LEDGER")}
	db, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = db.Backup(ctx, dir, cfg.DSN, nil)
	e := wantCode(t, err, tacerr.InsufficientSpace)
	for _, want := range []string{dir, "No space left on device", "partial dump was removed"} {
		if !strings.Contains(e.Message, want) {
			t.Errorf("message %q does not say %q", e.Message, want)
		}
	}
	if names := dirNames(t, dir); len(names) > 0 {
		t.Fatalf("a dump that filled its disk left %v", names)
	}
}

// TestRestoreDiskFull: a SQLite restore into a filesystem too small for
// the backup's ledger copy is insufficient_space naming the directory,
// and leaves nothing there: refused before it writes when the measure
// says so, and when the disk fills during the copy anyway (the free
// space it was told was ample), with the partial copy removed. It was
// unavailable ("copy ...: no space left on device"), which tells an
// operator nothing to do. The restores run in TestRestoreDiskFullChild.
func TestRestoreDiskFull(t *testing.T) {
	cfg := rebuildLedger(t)
	db, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	set := t.TempDir()
	name, err := db.Backup(context.Background(), set, cfg.DSN, nil)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	storetest.SmallFS(t, "TestRestoreDiskFullChild", 16<<10, "TACLINE_RESTORE_FILE="+filepath.Join(set, name))
}

// TestRestoreDiskFullChild is TestRestoreDiskFull's child.
func TestRestoreDiskFullChild(t *testing.T) {
	dir := storetest.SmallFSDir(t)
	file := os.Getenv("TACLINE_RESTORE_FILE")
	for _, tc := range []struct {
		name string
		free func(string) (int64, error) // nil: the filesystem's
		want string
	}{
		{"measured", nil, "nothing was written"},
		{"filled during the copy", func(string) (int64, error) { return 1 << 40, nil }, "filled up during the restore's copy"},
	} {
		restore := store.SetRebuildHooks(0, tc.free, nil)
		err := store.Restore(context.Background(), store.Config{Driver: store.SQLite, DSN: filepath.Join(dir, "ledger.db")}, file)
		restore()
		e := wantCode(t, err, tacerr.InsufficientSpace)
		if !strings.Contains(e.Message, dir) || !strings.Contains(e.Message, tc.want) {
			t.Errorf("%s: restore into a full filesystem: %v; want it to name %s and say %q", tc.name, err, dir, tc.want)
		}
		if names := dirNames(t, dir); len(names) > 0 {
			t.Fatalf("%s: a restore into a full filesystem left %v", tc.name, names)
		}
	}
}
