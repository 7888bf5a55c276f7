package store

// #include "qpsg.h"
import "C"

import (
	"fmt"
	"unsafe"
)

// Every SQLite connection this process opens plans a statement once,
// whatever values are bound to it (SQLite's query planner stability
// guarantee, turned on by an automatic extension in qpsg.c).
//
// Why: SQLite marks a statement whose plan could depend on a bound value
// (a join whose equality term the planner weighed by its value, a
// partial index a bound value might match, LIMIT ?), and compiles it again
// when that value changes. The driver (mattn/go-sqlite3) clears every
// binding before each execution, which SQLite takes as a change, so such
// statements were parsed and planned anew at every execution: the
// admission read every provisioning request makes (StationRequestCheckOf,
// a join) once per device, about 6 % of the server's CPU at an offered
// 500 devices/s (docs/benchmarks.md, session 13). No statement of the
// ledger needs a value-dependent plan: the partial indexes are matched by
// literals in the SQL (`state = 'pending'`), which the guarantee keeps,
// and the query-plan tests check the hot statements' indexes with it on.
// sqliteinit.go calls it once.
func registerQPSG() {
	if rc := C.qpsg_register(); rc != 0 {
		panic(fmt.Sprintf("store: register SQLite's planner setting: SQLite error %d", int(rc)))
	}
}

// stmtReprepares is how many times SQLite compiled a prepared statement
// (a sqlite3_stmt*) again since it was prepared.
func stmtReprepares(stmt unsafe.Pointer) int {
	return int(C.qpsg_reprepares(stmt))
}
