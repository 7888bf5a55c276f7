// A wrapper around SQLite's default page cache (pcache1) that answers a
// truncation which has nothing to drop without scanning the cache
// (pcache.go says why). Every other call passes through unchanged.
//
// The rule: each wrapped cache keeps max_key, a key at least as large as
// every key cached other than the lock-byte page's number (pending), and
// whether a page may be cached under pending. Keys enter a cache only
// through xFetch (a page found or created under its key) and xRekey (a
// page moved to a new key); both raise max_key or mark pending. Pages
// leave through xUnpin (discard), xTruncate, xDestroy and the cache's own
// recycling, which can only make max_key a looser bound. A truncation to
// limit drops the pages whose key is limit or more; when max_key < limit
// and no page is under pending at or above limit, there is no such page,
// and the call returns without reaching pcache1. Otherwise pcache1
// truncates, and max_key becomes limit - 1.

#include <stdarg.h>
#include <stdlib.h>

#include "pcache.h"

extern int sqlite3_config(int, ...);

#define SQLITE_OK 0
#define SQLITE_NOMEM 7
#define SQLITE_CONFIG_PCACHE2 18
#define SQLITE_CONFIG_GETPCACHE2 19

// SQLite's lock-byte offset (PENDING_BYTE); the page holding it is never
// part of a database, and btree.c's balance_nonroot uses its number as a
// temporary key when it swaps two pages' numbers.
#define PENDING_BYTE 0x40000000u

typedef struct wcache {
	sqlite3_pcache *base;
	unsigned pending;
	unsigned max_key;
	int pending_held;
} wcache;

static sqlite3_pcache_methods2 base;
static struct pcache_stats stats;
static int passthrough;

static void note(wcache *w, unsigned key) {
	if (key == w->pending) {
		w->pending_held = 1;
	} else if (key > w->max_key) {
		w->max_key = key;
	}
}

static int w_init(void *arg) {
	(void)arg;
	return base.xInit(base.pArg);
}

static void w_shutdown(void *arg) {
	(void)arg;
	if (base.xShutdown) base.xShutdown(base.pArg);
}

static sqlite3_pcache *w_create(int sz_page, int sz_extra, int purgeable) {
	wcache *w = calloc(1, sizeof *w);
	if (!w) return 0;
	w->base = base.xCreate(sz_page, sz_extra, purgeable);
	if (!w->base) {
		free(w);
		return 0;
	}
	w->pending = sz_page > 0 ? PENDING_BYTE / (unsigned)sz_page + 1 : 0;
	return (sqlite3_pcache *)w;
}

static void w_cachesize(sqlite3_pcache *p, int n) {
	base.xCachesize(((wcache *)p)->base, n);
}

static int w_pagecount(sqlite3_pcache *p) {
	return base.xPagecount(((wcache *)p)->base);
}

static sqlite3_pcache_page *w_fetch(sqlite3_pcache *p, unsigned key, int create) {
	wcache *w = (wcache *)p;
	sqlite3_pcache_page *pg = base.xFetch(w->base, key, create);
	if (pg) note(w, key);
	return pg;
}

static void w_unpin(sqlite3_pcache *p, sqlite3_pcache_page *pg, int discard) {
	base.xUnpin(((wcache *)p)->base, pg, discard);
}

static void w_rekey(sqlite3_pcache *p, sqlite3_pcache_page *pg, unsigned old_key, unsigned new_key) {
	wcache *w = (wcache *)p;
	base.xRekey(w->base, pg, old_key, new_key);
	if (new_key == w->pending) __atomic_add_fetch(&stats.parked, 1, __ATOMIC_RELAXED);
	// keys are unique in a cache: the page that held pending has left it
	if (old_key == w->pending) w->pending_held = 0;
	note(w, new_key);
}

static void w_truncate(sqlite3_pcache *p, unsigned limit) {
	wcache *w = (wcache *)p;
	__atomic_add_fetch(&stats.truncates, 1, __ATOMIC_RELAXED);
	if (w->max_key < limit && !(w->pending_held && w->pending >= limit) &&
	    !__atomic_load_n(&passthrough, __ATOMIC_RELAXED)) {
		__atomic_add_fetch(&stats.skipped, 1, __ATOMIC_RELAXED);
		return;
	}
	base.xTruncate(w->base, limit);
	if (limit == 0) {
		w->max_key = 0;
	} else if (w->max_key >= limit) {
		w->max_key = limit - 1;
	}
	if (w->pending >= limit) w->pending_held = 0;
}

static void w_destroy(sqlite3_pcache *p) {
	wcache *w = (wcache *)p;
	base.xDestroy(w->base);
	free(w);
}

static void w_shrink(sqlite3_pcache *p) {
	if (base.xShrink) base.xShrink(((wcache *)p)->base);
}

static sqlite3_pcache_methods2 wrapped = {
	1, 0, w_init, w_shutdown, w_create, w_cachesize, w_pagecount,
	w_fetch, w_unpin, w_rekey, w_truncate, w_destroy, w_shrink,
};

int pcache_register(void) {
	int rc = sqlite3_config(SQLITE_CONFIG_GETPCACHE2, &base);
	if (rc != SQLITE_OK) return rc;
	if (!base.xCreate) return SQLITE_NOMEM;
	return sqlite3_config(SQLITE_CONFIG_PCACHE2, &wrapped);
}

void pcache_stats_read(struct pcache_stats *out) {
	out->truncates = __atomic_load_n(&stats.truncates, __ATOMIC_RELAXED);
	out->skipped = __atomic_load_n(&stats.skipped, __ATOMIC_RELAXED);
	out->parked = __atomic_load_n(&stats.parked, __ATOMIC_RELAXED);
}

void pcache_set_passthrough(int on) {
	__atomic_store_n(&passthrough, on, __ATOMIC_RELAXED);
}
