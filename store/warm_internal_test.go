package store

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/jmoiron/sqlx"
	"golang.org/x/sys/unix"
)

// warmFixture makes a SQLite file of 1 KiB pages with two of warmKeys'
// tables, each with an ordinary index on the warmed column (so that the
// index alone can be dropped to count its pages), filled with random keys
// as provisioning would; db reads it as Warm does.
func warmFixture(t *testing.T, keys, requests int) (*DB, *sqlx.DB) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "warm.db")
	w, err := sqlx.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	w.SetMaxOpenConns(1)
	for _, q := range []string{
		`PRAGMA page_size = 1024`,
		`CREATE TABLE device_keys (spki_hash BLOB NOT NULL, device_serial TEXT NOT NULL)`,
		`CREATE INDEX device_keys_hash ON device_keys (spki_hash)`,
		`CREATE TABLE issuances (request_id TEXT NOT NULL, station TEXT NOT NULL)`,
		`CREATE INDEX issuances_request ON issuances (request_id)`,
	} {
		w.MustExec(q)
	}
	tx := w.MustBegin()
	for i := range keys {
		h := make([]byte, 32)
		rand.Read(h)
		tx.MustExec(`INSERT INTO device_keys VALUES (?, ?)`, h, fmt.Sprintf("SN%08d", i))
	}
	for i := range requests {
		var b [8]byte
		rand.Read(b[:])
		tx.MustExec(`INSERT INTO issuances VALUES (?, ?)`, fmt.Sprintf("req-%x", binary.BigEndian.Uint64(b[:])), fmt.Sprint(i%7))
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	r, err := sqlx.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return &DB{dialect: SQLite, path: path, r: r}, w
}

// indexPages counts an index's pages the way SQLite does: dropped, every
// one of them goes to the free list.
func indexPages(t *testing.T, w *sqlx.DB, index string) int64 {
	t.Helper()
	var before, after int64
	if err := w.Get(&before, `PRAGMA freelist_count`); err != nil {
		t.Fatal(err)
	}
	w.MustExec(`DROP INDEX ` + index)
	if err := w.Get(&after, `PRAGMA freelist_count`); err != nil {
		t.Fatal(err)
	}
	return after - before
}

// TestWarmReadsEveryPageOfTheIndexes: Warm reads each warmed index whole,
// no page more, no page less, level by level from its root.
func TestWarmReadsEveryPageOfTheIndexes(t *testing.T) {
	db, w := warmFixture(t, 30000, 6000)
	rep, err := db.Warm(context.Background(), WarmBudget{Read: 1 << 40}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Trees) != 2 {
		t.Fatalf("warmed %+v, want the two indexes of the fixture", rep.Trees)
	}
	var total int64
	for _, tr := range rep.Trees {
		want := indexPages(t, w, tr.Index)
		if tr.Pages != want || tr.Partial {
			t.Errorf("%s: read %d pages (partial %v), the index has %d", tr.Index, tr.Pages, tr.Partial, want)
		}
		total += tr.Pages
	}
	if rep.Trees[0].Index != "device_keys_hash" || rep.Trees[0].Levels < 3 {
		t.Errorf("first tree %+v, want device_keys_hash, at least 3 levels deep", rep.Trees[0])
	}
	if rep.Bytes != total*1024 {
		t.Errorf("Bytes = %d, want %d pages of 1 KiB", rep.Bytes, total)
	}
}

// TestWarmStopsAtTheBudget: a budget too small for an index's leaves reads
// its upper levels only, says so, and reads no later index.
func TestWarmStopsAtTheBudget(t *testing.T) {
	db, _ := warmFixture(t, 30000, 6000)
	full, err := db.Warm(context.Background(), WarmBudget{Read: 1 << 40}, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := full.Trees[0].Pages * 1024
	var progress atomic.Int64
	rep, err := db.Warm(context.Background(), WarmBudget{Read: first - 1024}, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Trees) != 1 || !rep.Trees[0].Partial || rep.Bytes > first-1024 || rep.Trees[0].Levels >= full.Trees[0].Levels {
		t.Fatalf("with a budget one page short of the first index: %+v", rep)
	}
	if progress.Load() < rep.Bytes {
		t.Fatalf("progress counted %d bytes, Warm read %d", progress.Load(), rep.Bytes)
	}
	// Exactly the first index: it is read whole, the second not at all.
	rep, err = db.Warm(context.Background(), WarmBudget{Read: first}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Trees[0].Partial || rep.Trees[0].Pages != full.Trees[0].Pages || (len(rep.Trees) > 1 && !rep.Trees[1].Partial) {
		t.Fatalf("with a budget of the first index: %+v", rep)
	}
}

// fileResident returns how many bytes of path's pages are in the page
// cache (mincore over a map of the file, which itself reads nothing).
func fileResident(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (st.Size()+osPage-1)/osPage)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal(e)
	}
	var n int64
	for _, v := range vec {
		n += int64(v & 1)
	}
	return n * osPage
}

// dropCached asks the kernel to drop path's cached pages
// (POSIX_FADV_DONTNEED drops the clean pages that no process maps).
func dropCached(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
}

// TestWarmKeepsTheIndexPagesMapped: the OS pages holding the warmed
// indexes stay in the page cache while the store keeps them mapped, when
// the kernel is asked to drop the file's unmapped pages (as proactive
// reclaim does); once the map is released the same request drops them. A
// budget bounds what is mapped.
func TestWarmKeepsTheIndexPagesMapped(t *testing.T) {
	db, w := warmFixture(t, 30000, 6000)
	w.Close() // every page written and synced: clean, so droppable
	rep, err := db.Warm(context.Background(), WarmBudget{Read: 1 << 40, Map: 1 << 40}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var indexPages int64
	for _, tr := range rep.Trees {
		indexPages += tr.Pages
	}
	if rep.MappedBytes < indexPages*1024 || rep.MappedBytes > 4*indexPages*1024 {
		t.Fatalf("mapped %d bytes for %d index pages of 1 KiB", rep.MappedBytes, indexPages)
	}
	dropCached(t, db.path)
	if got := fileResident(t, db.path); got < rep.MappedBytes {
		t.Fatalf("%d bytes resident after a drop with %d mapped", got, rep.MappedBytes)
	}
	db.releaseWarmMap()
	dropCached(t, db.path)
	if got := fileResident(t, db.path); got >= rep.MappedBytes {
		t.Fatalf("%d bytes still resident after the map's release (the drop did nothing: the test proves nothing)", got)
	}
	small, err := db.Warm(context.Background(), WarmBudget{Read: 1 << 40, Map: 8 * osPage}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.releaseWarmMap()
	if small.MappedBytes == 0 || small.MappedBytes > 8*osPage {
		t.Fatalf("a budget of 8 OS pages mapped %d bytes", small.MappedBytes)
	}
}

// TestWarmReadsEachPageOnceWhenMapped: a warm-up that keeps the trees'
// pages mapped reads each of them from the file once (populating the map
// is the second access that keeps a page on the kernel's active list), at
// start and at every refresh; without a map each page is read twice, and
// with a map too small for them all, twice only those left out of it.
func TestWarmReadsEachPageOnceWhenMapped(t *testing.T) {
	db, w := warmFixture(t, 30000, 6000)
	w.Close()
	defer db.releaseWarmMap()
	pages := func(rep WarmReport) (n int64) {
		for _, tr := range rep.Trees {
			n += tr.Pages
		}
		return n
	}
	// The pages in the file's last OS page, when the file ends inside
	// one, are not mapped (mapPlan), so they are read twice.
	fi, err := os.Stat(db.path)
	if err != nil {
		t.Fatal(err)
	}
	tail := (fi.Size() % osPage) / 1024 // warmFixture's page_size
	for _, what := range []string{"start", "refresh"} {
		rep, err := db.Warm(context.Background(), WarmBudget{Read: 1 << 40, Map: 1 << 40}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if n := pages(rep); n == 0 || rep.PageReads < n || rep.PageReads > n+tail || rep.MappedBytes == 0 {
			t.Fatalf("%s with a map: %d page reads for %d pages (mapped %d bytes; %d pages in the file's partial last OS page), want each page read once", what, rep.PageReads, n, rep.MappedBytes, tail)
		}
	}
	rep, err := db.Warm(context.Background(), WarmBudget{Read: 1 << 40}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := pages(rep); rep.PageReads != 2*n || rep.MappedBytes != 0 {
		t.Fatalf("without a map: %d page reads for %d pages, want each read twice", rep.PageReads, n)
	}
	rep, err = db.Warm(context.Background(), WarmBudget{Read: 1 << 40, Map: 8 * osPage}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := pages(rep); rep.PageReads <= n || rep.PageReads >= 2*n || rep.MappedBytes == 0 {
		t.Fatalf("with a map of 8 OS pages: %d page reads for %d pages, want the mapped ones read once, the others twice", rep.PageReads, n)
	}
}

// TestWarmChildrenOfAnyPage: whatever a page holds (a checkpoint may
// rewrite it between a parent's read and its own), its children are page
// numbers inside the file, and reading it never panics.
func TestWarmChildrenOfAnyPage(t *testing.T) {
	w := &warmer{pageSize: 1024, pages: 500}
	page := make([]byte, 1024)
	for i := range 2000 {
		rand.Read(page)
		page[0] = []byte{0x02, 0x05, 0x0a, 0x0d, 0x00}[i%5]
		for _, c := range w.children(nil, uint32(i%3+1), page) {
			if c < 1 || c > 500 {
				t.Fatalf("child %d outside a file of 500 pages", c)
			}
		}
	}
	// A well-formed interior page: two cells and the right-most pointer.
	page = make([]byte, 1024)
	page[0] = 0x05
	binary.BigEndian.PutUint16(page[3:], 2)
	binary.BigEndian.PutUint32(page[8:], 9)
	binary.BigEndian.PutUint16(page[12:], 1000)
	binary.BigEndian.PutUint16(page[14:], 1010)
	binary.BigEndian.PutUint32(page[1000:], 7)
	binary.BigEndian.PutUint32(page[1010:], 8)
	if got := w.children(nil, 2, page); fmt.Sprint(got) != "[7 8 9]" {
		t.Fatalf("children = %v, want [7 8 9]", got)
	}
}
