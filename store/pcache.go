package store

// #include "pcache.h"
import "C"

import "fmt"

// SQLite's page cache is wrapped (pcache.c) so that a truncation with
// nothing to drop does not scan the cache.
//
// Why: at the end of every write transaction SQLite truncates the
// connection's page cache to the database's size. Its default cache
// (pcache1) drops the pages above that size by walking every hash slot and
// every page it holds, unless its largest key is close to the limit. When
// SQLite's b-tree rebalances siblings and swaps two pages' numbers, it
// parks one page under a temporary number, that of the page holding the
// lock byte (1 GiB / page size + 1: 1,048,577 with the ledger's 1 KiB
// pages). pcache1 keeps that number as its largest key, so on a ledger
// under 1 GiB every later commit of the writer walked its whole cache (up
// to 64 MiB of pages) to drop nothing: 6.6 % of the server's CPU at an
// offered 500 devices/s (docs/benchmarks.md, session 16). The wrapper
// keeps its own bound on the keys cached, leaves the temporary number out
// of it once the page has moved on, and passes a truncation to pcache1
// only when some cached page may be at or above the limit. Which pages
// are cached, kept or dropped does not change.
func registerPageCache() {
	if rc := C.pcache_register(); rc != 0 {
		panic(fmt.Sprintf("store: wrap SQLite's page cache: SQLite error %d (it must be set before SQLite initializes)", int(rc)))
	}
}

// pageCacheStats returns, since the process started, the truncations
// SQLite asked of the page caches, how many of them had nothing to drop
// and did not reach pcache1, and how many times a page was parked under
// the lock-byte page's number.
func pageCacheStats() (truncates, skipped, parked int64) {
	var s C.struct_pcache_stats
	C.pcache_stats_read(&s)
	return int64(s.truncates), int64(s.skipped), int64(s.parked)
}

// setPageCachePassthrough makes every truncation reach pcache1 (on) or
// only those with something to drop (off, the default): benchmarks
// compare the two in one process.
func setPageCachePassthrough(on bool) {
	v := C.int(0)
	if on {
		v = 1
	}
	C.pcache_set_passthrough(v)
}
