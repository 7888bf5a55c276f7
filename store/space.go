package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/mattn/go-sqlite3"
	"golang.org/x/sys/unix"

	"github.com/tacline/tacline/tacerr"
)

// This file is the one owner of what the commands that copy a SQLite
// ledger into a new file (ledger rebuild, backup) do about space and
// progress: measure what the copy writes, refuse before writing when the
// filesystem has less free, turn a disk that fills during the copy into
// insufficient_space, remove a partial copy, and report the copy's growth.

// Test hooks: how often a copy (and a rebuild's check) reports progress,
// and the free space of a directory.
var (
	progressTick = time.Second
	freeSpace    = statfsFree
)

// CopyProgress says how far a copy of a SQLite ledger into a new file
// (VACUUM INTO) is: the bytes of the new file written so far and the
// estimate of its size (Bytes reaches TotalBytes when the copy ends), in
// pages of PageSize bytes.
type CopyProgress struct {
	Bytes, TotalBytes, PageSize int64
	File                        string        // the new file
	Elapsed                     time.Duration // since the copy (or a rebuild's phase) began
}

// sqliteUsed is the bytes of the pages in use of the SQLite database c
// reads (page_count - freelist_count, at its page size: what VACUUM INTO
// writes at the same page size), and that page size.
func sqliteUsed(ctx context.Context, c *sql.Conn) (used, pageSize int64, err error) {
	var pages, free int64
	for q, v := range map[string]*int64{"page_size": &pageSize, "page_count": &pages, "freelist_count": &free} {
		if err := c.QueryRowContext(ctx, "PRAGMA "+q).Scan(v); err != nil {
			return 0, 0, translate(err, "read the ledger's "+q)
		}
	}
	return (pages - free) * pageSize, pageSize, nil
}

// spaceMargin is the free space asked beyond the estimate of a copy: 2 %,
// at least 64 MiB (the new file's journal, and its WAL while a rebuild
// opens and checks it; what a live ledger grows by between the measure
// and a backup's snapshot; room for the filesystem's own metadata).
func spaceMargin(estimate int64) int64 {
	return max(estimate/50, 64<<20)
}

// spaceNeed says what a command will write into a directory, for the
// refusal when its filesystem has less free.
type spaceNeed struct {
	Task      string // "ledger rebuild", "backup"
	Dir       string
	Estimate  int64  // the new file's size
	What      string // "the new file it writes next to the ledger (about 1.2 GiB ...)"
	Elsewhere string // what else the operator may do: "or move the ledger to a larger filesystem"
}

// need is the estimate plus the margin.
func (s spaceNeed) need() int64 { return s.Estimate + spaceMargin(s.Estimate) }

// check reads the free space of s.Dir and refuses with insufficient_space
// when it is less than the need; it returns the need and what was free.
func (s spaceNeed) check() (need, free int64, err error) {
	need = s.need()
	if free, err = freeSpace(s.Dir); err != nil {
		return need, 0, tacerr.Wrap(tacerr.Unavailable, err, "read the free space of %s (statfs)", s.Dir)
	}
	if free < need {
		return need, free, tacerr.New(tacerr.InsufficientSpace,
			"%s needs %s free in %s, for %s and a margin; the filesystem has %s free. Free %s there (%s), then run it again; nothing was written",
			s.Task, sizeText(need), s.Dir, s.What, sizeText(free), sizeText(need-free), s.Elsewhere)
	}
	return need, free, nil
}

// statfsFree is the space an unprivileged process may still write under
// dir.
func statfsFree(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// sizeText writes n bytes for a person: "1.37 GiB (1471234048 bytes)".
func sizeText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB (%d bytes)", float64(n)/(1<<30), n)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB (%d bytes)", float64(n)/(1<<20), n)
	}
	return fmt.Sprintf("%d bytes", n)
}

// removeSQLiteFiles removes the SQLite file at path and SQLite's files
// beside it (a copy's partial file), and returns the bytes they held;
// what names the file in the error ("a ledger rebuild's new file").
func removeSQLiteFiles(path, what string) (int64, error) {
	var n int64
	for _, p := range []string{path, path + "-journal", path + "-wal", path + "-shm"} {
		st, err := os.Stat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err == nil {
			n += st.Size()
			err = os.Remove(p)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return n, tacerr.Wrap(tacerr.Unavailable, err, "remove %s (%s): remove it by hand, then run the command again", p, what)
		}
	}
	return n, nil
}

// vacuumInto writes the SQLite database c reads into the new file out
// with VACUUM INTO (in pages of pageSize bytes: the database's, or the
// one set on c with PRAGMA page_size), reporting the new file's growth
// against estimate about every progressTick. A disk that
// fills during the copy is insufficient_space (task names the command in
// the message, which says the partial copy was removed: the caller
// removes it).
func vacuumInto(ctx context.Context, c *sql.Conn, out string, pageSize, estimate int64, task string, progress func(CopyProgress)) error {
	start := time.Now()
	report := func(n, total int64) {
		progress(CopyProgress{Bytes: n, TotalBytes: total, PageSize: pageSize, File: out, Elapsed: time.Since(start)})
	}
	report(0, estimate)
	stop := everyTick(func() {
		if st, err := os.Stat(out); err == nil {
			// The estimate is not exact: stay under 100 % until done.
			total := max(estimate, st.Size())
			report(min(st.Size(), total*999/1000), total)
		}
	})
	_, err := c.ExecContext(ctx, qVacuumInto, out)
	stop()
	if err != nil {
		if se := (sqlite3.Error{}); errors.As(err, &se) && se.Code == sqlite3.ErrFull {
			return tacerr.Wrap(tacerr.InsufficientSpace, err,
				"the filesystem of %s filled up during the %s's copy of the ledger (something else wrote there after it measured the free space); the partial copy was removed and the ledger is as it was: free space there, then run it again", filepath.Dir(out), task)
		}
		return translate(err, "copy the SQLite ledger into "+out+" (VACUUM INTO)")
	}
	st, err := os.Stat(out)
	if err != nil {
		return tacerr.Wrap(tacerr.Internal, err, "the new file of the %s", task)
	}
	report(st.Size(), st.Size())
	return nil
}

// everyTick calls fn every progressTick until stop is called (stop returns
// once fn no longer runs).
func everyTick(fn func()) (stop func()) {
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(progressTick)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fn()
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}
