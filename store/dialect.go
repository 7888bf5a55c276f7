package store

// What differs between SQLite and PostgreSQL in the ledger's queries is
// decided here and read from db.sql everywhere else; opening, migrating,
// backing up and measuring a database (store.go, migrate.go, backup.go,
// size.go) are per database by nature.
type dialectSQL struct {
	// forUpdate ends a SELECT that must hold the rows it reads until
	// commit: a row lock on PostgreSQL; nothing on SQLite, whose write
	// transaction already excludes every other writer.
	forUpdate string
	// skipLocked ends the sub-SELECT of a claim or a prune, so that
	// replicas sharing one PostgreSQL database skip each other's rows.
	skipLocked string
	// lockOutbox, when set, waits for the transactions writing outbox rows
	// to end (PostgreSQL, where ids are assigned before commit).
	lockOutbox string
	// guardedAppend: the audit log appends in one statement guarded by the
	// head (data-modifying CTEs, PostgreSQL).
	guardedAppend bool
	// stagedAuditIMEIs: the audit append writes a leaf's IMEI index rows
	// into audit_imeis_staged (keyed by leaf index: it appends) and moves
	// them into audit_imeis every auditIMEIStage leaves (SQLite, where
	// every dirty page is written whole into the WAL; PostgreSQL writes
	// audit_imeis directly).
	stagedAuditIMEIs bool
	// claimsUntilBound: a device serial's claim (device_claims) lives
	// from the reserve or bind intent until the device is recorded, when
	// the devices row takes the serial over and the claim is deleted; a
	// claim is refused for a serial that has a devices row. So the claims
	// b-tree holds only the requests in flight, a few pages, instead of an
	// entry per device at one insertion point per station (SQLite, whose
	// one writer runs the check and the insert in one IMMEDIATE
	// transaction; PostgreSQL keeps every claim, which closes the window
	// between reading devices and inserting the claim at two replicas).
	claimsUntilBound bool
	// poolsAtOnce: a batch claims every pool with one UPDATE ... FROM
	// (VALUES ...) (SQLite: one writer, so no lock order to keep between
	// replicas).
	poolsAtOnce bool
	// readOnlyTx: read transactions are declared read-only (PostgreSQL;
	// SQLite's read pool is opened read-only instead).
	readOnlyTx bool
	// snapshotReads: read transactions are REPEATABLE READ, one snapshot
	// for all their statements (PostgreSQL; its default, READ COMMITTED,
	// takes one per statement; SQLite's read transactions are snapshots).
	snapshotReads bool
	// arrayParams: lists are sent as one array parameter (= ANY(?) for
	// IN lists, unnest(?, ?, ...) for the multi-row writer), so that a
	// statement's text does not depend on how many rows or values it
	// carries (PostgreSQL; SQLite has no array type).
	arrayParams bool
	// pipeline: a write transaction sends its writes whose only result is
	// a row count together, in one round trip, before its next statement
	// that returns rows or its commit (pgx batches; pipeline.go).
	pipeline bool
	// bindOnce: a batch completes its intents and binds its IMEIs with
	// one UPDATE each that finds every row by a primary-key probe
	// (sqlBindIMEIsPG), whichever way each IMEI was reserved (bindSets),
	// setting device_serial on every row (PostgreSQL: a state change
	// writes new entries in every index of the row anyway; SQLite rewrites
	// an index entry whenever its column is assigned, so it keeps two
	// statements).
	bindOnce bool
	// identityLeaves selects the audit leaves of identity events (their
	// type begins "station", "person." or "issuer."), exactly as the
	// partial index audit_identity's predicate (migration 0027) reads, so
	// the planner reads that index: the blob or bytea literal each database
	// compares a substring of the leaf with.
	identityLeaves string
}

var dialects = map[Dialect]dialectSQL{
	SQLite: {poolsAtOnce: true, stagedAuditIMEIs: true, claimsUntilBound: true,
		identityLeaves: `substr(data, 6, 7) IN (X'73746174696f6e', X'706572736f6e2e', X'6973737565722e')`},
	Postgres: {
		forUpdate:      " FOR UPDATE",
		skipLocked:     "FOR UPDATE SKIP LOCKED",
		lockOutbox:     `LOCK TABLE register_outbox IN SHARE MODE`,
		guardedAppend:  true,
		readOnlyTx:     true,
		snapshotReads:  true,
		arrayParams:    true,
		pipeline:       true,
		bindOnce:       true,
		identityLeaves: `substr(data, 6, 7) IN ('\x73746174696f6e'::bytea, '\x706572736f6e2e'::bytea, '\x6973737565722e'::bytea)`,
	},
}
