package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tacline/tacline/tacerr"
)

// warmKeys are the indexes a new device lands on at a place its own values
// choose, most valuable first: each provisioning request looks up the
// device key's hash (random: one leaf anywhere in the index per device),
// the request id and the device serial (a station's own sequence, or
// random when a station uses random request ids) before it reserves, and
// the bind inserts into the same leaves. An index is named by its table and
// first column, so a migration that rebuilds one (and renames an automatic
// index) is still found; TestWarmKeysResolve checks each resolves.
var warmKeys = []struct{ table, column string }{
	{"device_keys", "spki_hash"},
	{"issuances", "request_id"},
	{"reservations", "request_id"},
	{"devices", "serial"},
	{"device_claims", "serial"},
	{"imeis", "device_serial"},
}

// sqlWarmIndex finds the index of a table whose first column is the given
// one, and its root page.
const sqlWarmIndex = `SELECT il.name, s.rootpage FROM pragma_index_list(?) il JOIN sqlite_schema s ON s.name = il.name
	WHERE (SELECT ii.name FROM pragma_index_info(il.name) ii WHERE ii.seqno = 0) = ? ORDER BY il.name LIMIT 1`

// WarmTree is what Warm read of one index.
type WarmTree struct {
	Index string `json:"index"`
	Table string `json:"table"`
	// Pages is the number of the index's pages read; Levels how many of
	// its levels (the root's first).
	Pages  int64 `json:"pages"`
	Levels int   `json:"levels"`
	// Partial is true when the budget ended before the index's last
	// level (its leaves): the upper levels only were read.
	Partial bool `json:"partial,omitempty"`
}

// WarmReport is what Warm did.
type WarmReport struct {
	Trees  []WarmTree `json:"trees"`
	Bytes  int64      `json:"bytes"`
	Budget int64      `json:"budget_bytes"`
	// MappedBytes is what stays mapped of the OS pages holding the trees.
	MappedBytes int64 `json:"mapped_bytes"`
	// PageReads counts the pages read from the file: each page of the
	// trees once, and a second time those that are not kept mapped.
	PageReads int64   `json:"page_reads"`
	Seconds   float64 `json:"seconds"`
}

// warmReaders is the number of reads Warm keeps in flight: the disk
// answers many random reads at once far faster than one at a time
// (docs/benchmarks.md, session 10).
const warmReaders = 32

// warmRun is the most pages one read covers when their numbers follow
// each other.
const warmRun = 64

// Warm reads the pages of the ledger's key indexes (warmKeys) into the
// operating system's page cache, at most b.Read bytes, and counts what it
// read in progress as it goes. On a ledger larger than the machine's
// memory those indexes are what a restarted server reads from the disk,
// one page at a time, for every new device (the file's other pages are
// appended to or read rarely); read here level by level with many reads
// in flight, they come in seconds. Warm then keeps the OS pages holding
// what it read mapped, at most b.Map bytes of them, until the next Warm or
// Close (keepMapped says why), and says how much in MappedBytes. Warm reads
// the database file only; it changes nothing, and a page that a concurrent
// checkpoint rewrites is at worst read for nothing. PostgreSQL: nothing to
// do here (its pg_prewarm extension is the same tool, docs/operations.md).
func (db *DB) Warm(ctx context.Context, b WarmBudget, progress *atomic.Int64) (WarmReport, error) {
	start := time.Now()
	budget := b.Read
	rep := WarmReport{Budget: budget, Trees: []WarmTree{}}
	if db.dialect != SQLite {
		return rep, nil
	}
	f, err := os.Open(db.path)
	if err != nil {
		return rep, tacerr.Wrap(tacerr.Unavailable, err, "open the ledger to warm its indexes")
	}
	defer f.Close()
	var hdr [100]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return rep, tacerr.Wrap(tacerr.Unavailable, err, "read the ledger's header")
	}
	pageSize := int64(binary.BigEndian.Uint16(hdr[16:18]))
	if pageSize == 1 {
		pageSize = 65536
	}
	if pageSize < 512 || pageSize&(pageSize-1) != 0 {
		return rep, tacerr.New(tacerr.Internal, "the ledger's header gives page size %d", pageSize)
	}
	st, err := f.Stat()
	if err != nil {
		return rep, tacerr.Wrap(tacerr.Unavailable, err, "read the ledger's size")
	}
	plan := newMapPlan(pageSize, st.Size(), b.Map)
	w := &warmer{f: f, pageSize: pageSize, pages: uint32(min(st.Size()/pageSize, 1<<32-1)), progress: progress}
	for _, k := range warmKeys {
		var idx struct {
			Name string `db:"name"`
			Root uint32 `db:"rootpage"`
		}
		if err := db.r.GetContext(ctx, &idx, sqlWarmIndex, k.table, k.column); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			return rep, translate(err, "find the index of "+k.table+"."+k.column)
		}
		t := WarmTree{Index: idx.Name, Table: k.table}
		level := []uint32{idx.Root}
		for len(level) > 0 && t.Levels < 32 {
			if rep.Bytes+int64(len(level))*pageSize > budget {
				t.Partial = true
				break
			}
			// A page that will be kept mapped is read once: populating
			// the map is its second access. The others are read twice.
			mapped, unmapped := plan.add(level)
			next, err := w.read(ctx, mapped, false)
			if err != nil {
				return rep, err
			}
			more, err := w.read(ctx, unmapped, true)
			if err != nil {
				return rep, err
			}
			t.Pages += int64(len(level))
			t.Levels++
			rep.Bytes += int64(len(level)) * pageSize
			level = append(next, more...)
		}
		if t.Pages > 0 {
			rep.Trees = append(rep.Trees, t)
		}
		if t.Partial {
			break
		}
	}
	rep.PageReads = w.reads.Load()
	if rep.MappedBytes, err = db.keepMapped(f, st.Size(), plan); err != nil {
		return rep, err
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

// warmer reads b-tree pages of one file.
type warmer struct {
	f        *os.File
	pageSize int64
	pages    uint32 // pages in the file when Warm started
	progress *atomic.Int64
	reads    atomic.Int64 // pages read, each read counted
}

// read reads the given pages (many reads in flight, neighbours in one
// read), twice when twice is set, and returns the child pages of those
// that are interior b-tree pages, in no order.
func (w *warmer) read(ctx context.Context, pages []uint32, twice bool) ([]uint32, error) {
	pages = slices.Clone(pages)
	slices.Sort(pages)
	pages = slices.Compact(pages)
	var runs [][2]uint32 // first page, count
	for _, p := range pages {
		if n := len(runs); n > 0 && runs[n-1][0]+runs[n-1][1] == p && runs[n-1][1] < warmRun {
			runs[n-1][1]++
			continue
		}
		runs = append(runs, [2]uint32{p, 1})
	}
	var (
		mu       sync.Mutex
		children []uint32
		firstErr error
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	for range min(warmReaders, len(runs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, warmRun*w.pageSize)
			var kids []uint32
			for {
				i := int(next.Add(1) - 1)
				if i >= len(runs) || ctx.Err() != nil {
					break
				}
				first, count := runs[i][0], runs[i][1]
				b := buf[:int64(count)*w.pageSize]
				n, err := w.f.ReadAt(b, int64(first-1)*w.pageSize)
				w.reads.Add(int64(count))
				if err == nil && twice {
					// Read twice: the kernel keeps a page read once on
					// its inactive list, the first evicted, where the
					// pages of a whole-ledger read (a check, a backup)
					// crowd it out within minutes; a second access
					// moves it to the active list.
					_, err = w.f.ReadAt(b, int64(first-1)*w.pageSize)
					w.reads.Add(int64(count))
				}
				if err != nil && !errors.Is(err, io.EOF) {
					mu.Lock()
					firstErr = cmp.Or(firstErr, error(tacerr.Wrap(tacerr.Unavailable, err, "read ledger page %d", first)))
					mu.Unlock()
					break
				}
				if w.progress != nil {
					w.progress.Add(int64(n))
				}
				for j := int64(0); j < int64(count) && (j+1)*w.pageSize <= int64(n); j++ {
					kids = w.children(kids, first+uint32(j), b[j*w.pageSize:(j+1)*w.pageSize])
				}
			}
			mu.Lock()
			children = append(children, kids...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return children, nil
}

// children appends the child page numbers of an interior b-tree page (an
// index's or a table's) to kids; a leaf, or a page that is not what its
// parent said (rewritten since the parent was read), has none. A child
// number outside the file is dropped.
func (w *warmer) children(kids []uint32, pgno uint32, page []byte) []uint32 {
	h := 0
	if pgno == 1 {
		h = 100 // the file header comes first on page 1
	}
	if len(page) < h+12 || (page[h] != 0x02 && page[h] != 0x05) {
		return kids
	}
	add := func(c uint32) {
		if c >= 1 && c <= w.pages {
			kids = append(kids, c)
		}
	}
	cells := int(binary.BigEndian.Uint16(page[h+3:]))
	for i := range cells {
		at := h + 12 + 2*i
		if at+2 > len(page) {
			break
		}
		off := int(binary.BigEndian.Uint16(page[at:]))
		if off+4 > len(page) {
			continue
		}
		add(binary.BigEndian.Uint32(page[off:]))
	}
	add(binary.BigEndian.Uint32(page[h+8:]))
	return kids
}

// memTotal is the machine's memory (MemTotal in /proc/meminfo), or 4 GiB
// where that cannot be read.
func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err == nil {
		var kib int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kib); err == nil && kib > 0 {
			return kib * 1024
		}
	}
	return 4 << 30
}

// osPage is the size of the operating system's pages that Warm keeps
// mapped (Linux on the architectures tacline is built for).
const osPage = 4096

// mapPlan is the OS pages of the ledger file that Warm keeps mapped: one
// bit per OS page, those holding the trees' pages in the order Warm reads
// them, until budget bytes of OS pages. nil: nothing is kept mapped.
type mapPlan struct {
	pageSize, osPages, budget, n int64
	want                         []uint64
	full                         bool // the budget ended
}

func newMapPlan(pageSize, size, budget int64) *mapPlan {
	if size < osPage || budget < osPage {
		return nil
	}
	return &mapPlan{pageSize: pageSize, osPages: size / osPage, budget: budget, want: make([]uint64, (size/osPage+63)/64)}
}

// add marks the OS pages holding pages, in order, while the budget lasts,
// and splits pages into those that will be kept mapped and the others.
func (p *mapPlan) add(pages []uint32) (mapped, unmapped []uint32) {
	if p == nil {
		return nil, pages
	}
	for i, pg := range pages {
		o := (int64(pg) - 1) * p.pageSize / osPage
		switch {
		case o >= p.osPages:
			unmapped = append(unmapped, pg)
			continue
		case p.want[o/64]&(1<<(o%64)) != 0:
		case p.full || (p.n+1)*osPage > p.budget:
			p.full = true
			return mapped, append(unmapped, pages[i:]...)
		default:
			p.want[o/64] |= 1 << (o % 64)
			p.n++
		}
		mapped = append(mapped, pg)
	}
	return mapped, unmapped
}

// keepMapped maps the ledger file read-only and has the kernel map, in
// order, the OS pages of plan (madvise MADV_POPULATE_READ: the kernel
// reads a page that is not resident and reports a failure as an error,
// never as a signal; tacline never reads the map). The map replaces the
// one an earlier warm-up kept and stays until Close. It returns the bytes
// mapped.
//
// Why a map nobody reads: a page of the page cache that no process maps is
// the first the kernel gives back, and hosts that reclaim memory
// proactively (DAMON's pageout of unmapped file pages, as on the machines
// docs/benchmarks.md measured) give it back within a minute or two of its
// last use, however much memory is free. The leaves of an index with
// random keys (the device key's hash) are each used every few minutes at
// line speed, so without the map a device waits on the disk for one
// nearly every time. DAMON's scheme leaves mapped pages alone, and the
// kernel's own reclaim, when memory runs short, takes a mapped page one
// round later than an unmapped one. The pages count in the server's
// resident set (RssFile) while mapped, with the resident neighbours the
// kernel maps around each (fault-around).
func (db *DB) keepMapped(f *os.File, size int64, plan *mapPlan) (int64, error) {
	db.warmMu.Lock()
	defer db.warmMu.Unlock()
	if plan == nil || plan.n == 0 {
		return 0, nil
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return 0, tacerr.Wrap(tacerr.Unavailable, err, "map the ledger to keep its key indexes")
	}
	// A page the kernel must read is read alone, not with its neighbours.
	_ = unix.Madvise(m, unix.MADV_RANDOM)
	osPages, want := plan.osPages, plan.want
	var mapped int64
	for o := int64(0); o < osPages; {
		if want[o/64]&(1<<(o%64)) == 0 {
			o++
			continue
		}
		end := o + 1
		for end < osPages && want[end/64]&(1<<(end%64)) != 0 {
			end++
		}
		run := m[o*osPage : end*osPage]
		switch err := unix.Madvise(run, unix.MADV_POPULATE_READ); {
		case err == nil:
			mapped += int64(len(run))
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.EPERM), errors.Is(err, unix.ENOSYS):
			// A kernel before 5.14, or a system call filter.
			_ = unix.Munmap(m)
			return 0, tacerr.Wrap(tacerr.Unavailable, err, "keep the ledger's key indexes mapped (madvise MADV_POPULATE_READ needs Linux 5.14 or later)")
		}
		// Otherwise (a read error, EIO; memory, ENOMEM) the run stays
		// unmapped, its pages read once by the walk, and is read from the
		// disk when a device needs it.
		o = end
	}
	if db.warmMap != nil {
		_ = unix.Munmap(db.warmMap)
	}
	db.warmMap = m
	return mapped, nil
}
