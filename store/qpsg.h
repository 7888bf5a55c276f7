// Declarations for qpsg.c.

#ifndef TACLINE_QPSG_H
#define TACLINE_QPSG_H

// qpsg_register makes every SQLite connection opened from now on plan
// without looking at bound values; it returns SQLite's result code.
int qpsg_register(void);

// qpsg_reprepares is how many times SQLite compiled the prepared
// statement stmt (a sqlite3_stmt*) again since it was prepared.
int qpsg_reprepares(void *stmt);

#endif
