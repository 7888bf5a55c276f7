// Declarations for pcache.c: SQLite's page-cache interface as sqlite3.h
// defines it (sqlite3_pcache_methods2, part of SQLite's stable ABI), and
// the wrapper's own entry points.

#ifndef TACLINE_PCACHE_H
#define TACLINE_PCACHE_H

typedef struct sqlite3_pcache sqlite3_pcache;

typedef struct sqlite3_pcache_page {
	void *pBuf;
	void *pExtra;
} sqlite3_pcache_page;

typedef struct sqlite3_pcache_methods2 {
	int iVersion;
	void *pArg;
	int (*xInit)(void *);
	void (*xShutdown)(void *);
	sqlite3_pcache *(*xCreate)(int szPage, int szExtra, int bPurgeable);
	void (*xCachesize)(sqlite3_pcache *, int nCachesize);
	int (*xPagecount)(sqlite3_pcache *);
	sqlite3_pcache_page *(*xFetch)(sqlite3_pcache *, unsigned key, int createFlag);
	void (*xUnpin)(sqlite3_pcache *, sqlite3_pcache_page *, int discard);
	void (*xRekey)(sqlite3_pcache *, sqlite3_pcache_page *, unsigned oldKey, unsigned newKey);
	void (*xTruncate)(sqlite3_pcache *, unsigned iLimit);
	void (*xDestroy)(sqlite3_pcache *);
	void (*xShrink)(sqlite3_pcache *);
} sqlite3_pcache_methods2;

// Counters over every page cache of the process since it started:
// truncations SQLite asked for, those the wrapper answered without the
// wrapped cache because no page at or above the limit was cached, and
// pages parked under the lock-byte page's number.
struct pcache_stats {
	long long truncates, skipped, parked;
};

// pcache_register wraps SQLite's page cache. It must run before SQLite is
// initialized (before any connection, VFS or extension call); it returns
// an SQLite result code (SQLITE_MISUSE, 21, when SQLite was initialized
// already).
int pcache_register(void);
void pcache_stats_read(struct pcache_stats *out);

// pcache_set_passthrough(1) hands every truncation to pcache1, as if the
// wrapper were not there (for benchmarks that compare the two).
void pcache_set_passthrough(int on);

#endif
