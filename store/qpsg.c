// Every SQLite connection of this process plans its statements without
// looking at the values bound to them (SQLite's query planner stability
// guarantee, SQLITE_DBCONFIG_ENABLE_QPSG); qpsg.go says why.

#include "qpsg.h"

// The SQLite functions and constants used here (sqlite3.h; the library is
// the amalgamation compiled into github.com/mattn/go-sqlite3).
typedef struct sqlite3 sqlite3;
typedef struct sqlite3_stmt sqlite3_stmt;
extern int sqlite3_auto_extension(void (*xEntryPoint)(void));
extern int sqlite3_db_config(sqlite3 *, int op, ...);
extern int sqlite3_stmt_status(sqlite3_stmt *, int op, int resetFlg);

#define SQLITE_DBCONFIG_ENABLE_QPSG 1007
#define SQLITE_STMTSTATUS_REPREPARE 5

// qpsg_on runs as every connection opens (an automatic extension): it
// turns the guarantee on for that connection.
static int qpsg_on(sqlite3 *db, char **errmsg, const void *api) {
	(void)errmsg;
	(void)api;
	return sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_QPSG, 1, (int *)0);
}

int qpsg_register(void) {
	return sqlite3_auto_extension((void (*)(void))qpsg_on);
}

int qpsg_reprepares(void *stmt) {
	return sqlite3_stmt_status((sqlite3_stmt *)stmt, SQLITE_STMTSTATUS_REPREPARE, 0);
}
