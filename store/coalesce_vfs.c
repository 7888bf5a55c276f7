// The write-coalescing SQLite VFS of the ledger's writer (coalesce_vfs.go
// explains why). It wraps SQLite's default VFS (unix) and changes one
// thing: consecutive writes to one file that continue each other (the
// WAL frames of a transaction, each written by SQLite as a 24-byte header
// and a page; the runs of consecutive pages a checkpoint copies into the
// database file) are gathered in memory and handed to the wrapped file as
// one write. Everything else passes through.
//
// A buffered region reaches the wrapped file, in the order it was
// written, before any other operation on that file can observe the file:
// before every read that overlaps it, before xSync, xTruncate, xFileSize,
// xClose, xLock, xUnlock, xCheckReservedLock, xFileControl, every shm call
// and xFetch, and before a write that does not continue it. On the WAL it
// is also written as soon as a transaction's commit frame is complete, so
// the frames of a commit are in the file before SQLite publishes them in
// the wal-index (shm) for other connections, whatever the synchronous
// setting. So the file seen by SQLite, by other connections and by the
// kernel at every fsync is the file the unix VFS alone would have written.

#include <stdlib.h>
#include <string.h>

#include "coalesce_vfs.h"

// The SQLite functions and constants used here (sqlite3.h; the library is
// the amalgamation compiled into github.com/mattn/go-sqlite3).
extern sqlite3_vfs *sqlite3_vfs_find(const char *zVfsName);
extern int sqlite3_vfs_register(sqlite3_vfs *, int makeDflt);

#define SQLITE_OK 0
#define SQLITE_ERROR 1
#define SQLITE_NOMEM 7
#define SQLITE_IOERR_SHORT_READ (10 | (2 << 8))
#define SQLITE_OPEN_MAIN_DB 0x00000100
#define SQLITE_OPEN_WAL 0x00080000

// The unix VFS writes at most 128 KiB - 1 bytes with one system call (it
// masks the length with 0x1ffff): a gathered region is written in chunks of
// 31 pages.
#define CHUNK (31 * 4096)

// Largest region gathered before it is written (the WAL of one group
// commit is about 1 MiB; a checkpoint run can be longer).
#define COALESCE_MAX (8 << 20)

enum { KIND_OTHER, KIND_MAIN, KIND_WAL };

typedef struct cfile {
	sqlite3_file base;  // pMethods: coalesce_methods
	sqlite3_file *real; // the wrapped file, allocated right after this struct
	int kind;
	unsigned char *buf; // the gathered region [off, off+len)
	sqlite3_int64 off;
	int len, cap;
	sqlite3_int64 commit_end; // WAL: the end of a commit frame's header, or -1
	sqlite3_int64 wal_end;    // WAL: the end of the frames written since the WAL header
	int err;                  // a failed write of xShmBarrier, reported by the next flush
} cfile;

static sqlite3_vfs *base_vfs;
static sqlite3_vfs coalesce_vfs;
static struct coalesce_stats stats;

static void count(long long *c, long long n) { __atomic_fetch_add(c, n, __ATOMIC_RELAXED); }

void coalesce_stats_read(struct coalesce_stats *out) {
	out->writes = __atomic_load_n(&stats.writes, __ATOMIC_RELAXED);
	out->flushes = __atomic_load_n(&stats.flushes, __ATOMIC_RELAXED);
	out->bytes = __atomic_load_n(&stats.bytes, __ATOMIC_RELAXED);
}

// flush writes the gathered region to the wrapped file. On error the
// region is dropped and the error returned to SQLite, which then treats the
// file as it treats any failed write (the transaction or checkpoint fails);
// an error kept by xShmBarrier is returned first.
static int flush(cfile *p) {
	if (p->err != SQLITE_OK) {
		int rc = p->err;
		p->err = SQLITE_OK;
		return rc;
	}
	if (p->len == 0) {
		return SQLITE_OK;
	}
	int rc = SQLITE_OK;
	for (int done = 0; done < p->len && rc == SQLITE_OK; done += CHUNK) {
		int n = p->len - done < CHUNK ? p->len - done : CHUNK;
		rc = p->real->pMethods->xWrite(p->real, p->buf + done, n, p->off + done);
		count(&stats.flushes, 1);
	}
	p->len = 0;
	return rc;
}

// FLUSH_THEN writes the gathered region of file f, then makes call (an
// operation of the wrapped file) unless the write failed.
#define FLUSH_THEN(call)                          \
	cfile *p = (cfile *)f;                        \
	int rc = flush(p);                            \
	return rc != SQLITE_OK ? rc : (call)

static int c_close(sqlite3_file *f) {
	cfile *p = (cfile *)f;
	int rc = flush(p);
	int rc2 = p->real->pMethods->xClose(p->real);
	free(p->buf);
	p->buf = 0;
	p->cap = 0;
	return rc != SQLITE_OK ? rc : rc2;
}

static int c_read(sqlite3_file *f, void *dst, int n, sqlite3_int64 off) {
	cfile *p = (cfile *)f;
	if (p->len > 0 && off < p->off + p->len && p->off < off + n) {
		int rc = flush(p);
		if (rc != SQLITE_OK) {
			return rc;
		}
	}
	return p->real->pMethods->xRead(p->real, dst, n, off);
}

static int grow(cfile *p, int need) {
	if (need <= p->cap) {
		return SQLITE_OK;
	}
	int c = p->cap ? p->cap : (64 << 10);
	while (c < need) {
		c *= 2;
	}
	unsigned char *b = realloc(p->buf, c);
	if (!b) {
		return SQLITE_NOMEM;
	}
	p->buf = b;
	p->cap = c;
	return SQLITE_OK;
}

static int c_write(sqlite3_file *f, const void *src, int n, sqlite3_int64 off) {
	cfile *p = (cfile *)f;
	if (p->kind == KIND_OTHER) {
		return p->real->pMethods->xWrite(p->real, src, n, off);
	}
	count(&stats.writes, 1);
	count(&stats.bytes, n);
	int rc;
	// A write that neither continues nor lies inside the gathered region
	// (a rewritten WAL frame of the same transaction does) ends it.
	if (p->len > 0 && (off < p->off || off > p->off + p->len)) {
		if ((rc = flush(p)) != SQLITE_OK) {
			return rc;
		}
	}
	if (p->len == 0) {
		p->off = off;
	}
	sqlite3_int64 end = off + n - p->off;
	if (end > COALESCE_MAX) {
		// Too long to gather: write what was gathered, then this write alone.
		if ((rc = flush(p)) != SQLITE_OK) {
			return rc;
		}
		return p->real->pMethods->xWrite(p->real, src, n, off);
	}
	if ((rc = grow(p, (int)end)) != SQLITE_OK) {
		return rc;
	}
	memcpy(p->buf + (off - p->off), src, n);
	if (end > p->len) {
		p->len = (int)end;
	}
	if (p->kind == KIND_WAL) {
		// A WAL frame header is 24 bytes after the 32-byte WAL header; bytes
		// 4..7 hold the database size after a commit, zero otherwise. The
		// frame's page follows it: once written, the commit is complete.
		// A commit frame's header written again over a frame already
		// written (SQLite rewrites checksums when a transaction changed a
		// page it had spilled) completes the commit at once. wal_end is
		// the end of what this handle wrote since the WAL header (offset 0)
		// was last written, so a WAL restarted from its beginning does not
		// look like a rewrite.
		const unsigned char *h = src;
		sqlite3_int64 seen = off == 0 ? 0 : p->wal_end;
		p->wal_end = off + n > seen ? off + n : seen;
		if (n == 24 && off >= 32 && (h[4] | h[5] | h[6] | h[7]) != 0) {
			if (off + 24 < seen) {
				return flush(p);
			}
			p->commit_end = off + 24;
		} else if (p->commit_end >= 0 && off == p->commit_end) {
			p->commit_end = -1;
			return flush(p);
		}
	}
	return SQLITE_OK;
}

static int c_truncate(sqlite3_file *f, sqlite3_int64 size) {
	if (((cfile *)f)->wal_end > size) {
		((cfile *)f)->wal_end = size;
	}
	FLUSH_THEN(p->real->pMethods->xTruncate(p->real, size));
}

static int c_sync(sqlite3_file *f, int flags) {
	FLUSH_THEN(p->real->pMethods->xSync(p->real, flags));
}

static int c_file_size(sqlite3_file *f, sqlite3_int64 *size) {
	FLUSH_THEN(p->real->pMethods->xFileSize(p->real, size));
}

static int c_lock(sqlite3_file *f, int lock) {
	FLUSH_THEN(p->real->pMethods->xLock(p->real, lock));
}

static int c_unlock(sqlite3_file *f, int lock) {
	FLUSH_THEN(p->real->pMethods->xUnlock(p->real, lock));
}

static int c_check_reserved(sqlite3_file *f, int *out) {
	FLUSH_THEN(p->real->pMethods->xCheckReservedLock(p->real, out));
}

static int c_file_control(sqlite3_file *f, int op, void *arg) {
	FLUSH_THEN(p->real->pMethods->xFileControl(p->real, op, arg));
}

static int c_sector_size(sqlite3_file *f) {
	cfile *p = (cfile *)f;
	return p->real->pMethods->xSectorSize(p->real);
}

static int c_device_characteristics(sqlite3_file *f) {
	cfile *p = (cfile *)f;
	return p->real->pMethods->xDeviceCharacteristics(p->real);
}

static int c_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **pp) {
	FLUSH_THEN(p->real->pMethods->xShmMap(p->real, pg, pgsz, extend, pp));
}

static int c_shm_lock(sqlite3_file *f, int offset, int n, int flags) {
	FLUSH_THEN(p->real->pMethods->xShmLock(p->real, offset, n, flags));
}

static void c_shm_barrier(sqlite3_file *f) {
	cfile *p = (cfile *)f;
	// A barrier cannot fail: the error of a failed write is kept and
	// returned by the next operation on the file (which flushes first).
	if (p->len > 0) {
		p->err = flush(p);
	}
	p->real->pMethods->xShmBarrier(p->real);
}

static int c_shm_unmap(sqlite3_file *f, int del) {
	FLUSH_THEN(p->real->pMethods->xShmUnmap(p->real, del));
}

static int c_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp) {
	FLUSH_THEN(p->real->pMethods->xFetch(p->real, off, n, pp));
}

static int c_unfetch(sqlite3_file *f, sqlite3_int64 off, void *ptr) {
	cfile *p = (cfile *)f;
	return p->real->pMethods->xUnfetch(p->real, off, ptr);
}

// One method table per version of the wrapped file's, so SQLite sees the
// same capabilities (shm, mmap) as without the wrapper.
#define METHODS(v)                                                                                   \
	{v, c_close, c_read, c_write, c_truncate, c_sync, c_file_size, c_lock, c_unlock, c_check_reserved, \
	 c_file_control, c_sector_size, c_device_characteristics, c_shm_map, c_shm_lock, c_shm_barrier,  \
	 c_shm_unmap, c_fetch, c_unfetch}
static const sqlite3_io_methods methods[4] = {METHODS(1), METHODS(1), METHODS(2), METHODS(3)};

static int c_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *f, int flags, int *out) {
	cfile *p = (cfile *)f;
	memset(p, 0, sizeof(*p));
	p->real = (sqlite3_file *)&p[1];
	p->commit_end = -1;
	int rc = base_vfs->xOpen(base_vfs, name, p->real, flags, out);
	if (rc != SQLITE_OK || !p->real->pMethods) {
		p->base.pMethods = 0;
		return rc != SQLITE_OK ? rc : SQLITE_ERROR;
	}
	if (flags & SQLITE_OPEN_WAL) {
		p->kind = KIND_WAL;
	} else if (flags & SQLITE_OPEN_MAIN_DB) {
		p->kind = KIND_MAIN;
	}
	int v = p->real->pMethods->iVersion;
	if (v < 1 || v > 3) {
		v = v > 3 ? 3 : 1;
	}
	p->base.pMethods = &methods[v];
	return SQLITE_OK;
}

int coalesce_vfs_register(const char *name) {
	base_vfs = sqlite3_vfs_find(0);
	if (!base_vfs) {
		return SQLITE_ERROR;
	}
	coalesce_vfs = *base_vfs; // every other method is the base VFS's own
	coalesce_vfs.pNext = 0;
	coalesce_vfs.zName = name;
	coalesce_vfs.szOsFile = (int)sizeof(cfile) + base_vfs->szOsFile;
	coalesce_vfs.xOpen = c_open;
	return sqlite3_vfs_register(&coalesce_vfs, 0);
}
