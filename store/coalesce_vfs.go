package store

// #include "coalesce_vfs.h"
import "C"

import "fmt"

// coalesceVFS is the name of the SQLite VFS the ledger's writer opens its
// database with (coalesce_vfs.c). SQLite's unix VFS writes each WAL frame
// with two system calls (its 24-byte header, then the page), so a group
// commit of N pages cost 2N pwrite calls before its one fsync, and a
// checkpoint one pwrite per page. The VFS gathers writes that continue
// each other into one write: a commit's frames become one pwrite before
// the same fsync, a checkpoint's run of consecutive pages one pwrite. The
// bytes, their order relative to every fsync and what any reader can see
// are unchanged (the C file states the rules); only the number of system
// calls drops. Readers keep SQLite's default VFS: they never write.
const coalesceVFS = "tacline-coalesce"

// registerCoalesceVFS registers the VFS (sqliteinit.go calls it once).
func registerCoalesceVFS() {
	if rc := C.coalesce_vfs_register(C.CString(coalesceVFS)); rc != 0 {
		panic(fmt.Sprintf("store: register the SQLite VFS %s: SQLite error %d", coalesceVFS, int(rc)))
	}
}

// coalesceStats returns the VFS's counters since the process started:
// writes SQLite asked for on WAL and database files, the writes handed to
// the file system for them, and their bytes.
func coalesceStats() (writes, flushes, bytes int64) {
	var s C.struct_coalesce_stats
	C.coalesce_stats_read(&s)
	return int64(s.writes), int64(s.flushes), int64(s.bytes)
}
