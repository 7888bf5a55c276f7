// Package store is tacline's allocation ledger: the one place that decides
// which IMEI goes where and remembers it forever.
//
// It runs on SQLite (the embedded default: WAL, synchronous=FULL, immediate
// write transactions) and on PostgreSQL (the scale-out ledger, shared by
// several tacline replicas). All of tacline's SQL lives here: the audit log
// and the register outbox keep their rows in the ledger's tables through
// typed appenders on Tx (in the ledger's transaction) and read them through
// streaming iterators on DB; no other package sees a database handle, a
// query or which database runs below.
//
// The store promises:
//   - no IMEI is ever allocated twice: the 14-digit IMEI is unique in the
//     imeis table (its primary key on PostgreSQL, the unique index
//     imeis_imei14 on SQLite), and SNRs are handed out below a per-pool
//     high-water mark that only grows;
//   - every SNR below a pool's high-water mark has exactly one ledger row
//     (RESERVED, BOUND, VOIDED or REVOKED); Check verifies it;
//   - a reservation is durable before Reserve returns (group commit batches
//     concurrent reservations into one transaction; it never acknowledges a
//     reservation whose transaction did not commit);
//   - pools inside one TAC never overlap, enforced by the database itself
//     (an exclusion constraint on PostgreSQL, triggers on SQLite).
package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/mattn/go-sqlite3"
	"golang.org/x/sys/unix"

	"github.com/tacline/tacline/internal/retry"
	"github.com/tacline/tacline/internal/sqlitefile"
	"github.com/tacline/tacline/store/internal/rawsql"
	"github.com/tacline/tacline/tacerr"
)

// Dialect names a supported database.
type Dialect string

// The supported databases.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// Config selects the ledger database.
type Config struct {
	Driver Dialect `yaml:"driver" doc:"sqlite (embedded ledger, one server) or postgres (one ledger shared by several replicas)"`       // sqlite | postgres
	DSN    string  `yaml:"dsn" doc:"SQLite: the database file (relative to this file); PostgreSQL: a postgres:// URL or key=value DSN"` // SQLite: a file path; PostgreSQL: a URL or key=value DSN
	// MaxConns bounds the PostgreSQL connection pool (default 16).
	MaxConns int `yaml:"max_conns" doc:"largest PostgreSQL connection pool of one process (0: 16)" default:"16"`
	// WarmMiB bounds what tacline serve reads of a SQLite ledger's key
	// indexes into the page cache (DB.Warm), WarmMapMiB what it keeps
	// mapped of the file's pages that hold them.
	WarmMiB    int `yaml:"warm_mib" doc:"SQLite: the most MiB of the ledger's key indexes tacline serve reads into the page cache as it starts (and every warm_refresh while it keeps them mapped, warm_map_mib), so that devices do not wait on the disk (0: a quarter of the machine's memory; -1: none)" default:"0"`
	WarmMapMiB int `yaml:"warm_map_mib" doc:"SQLite: the most MiB of the ledger file's pages holding those indexes that tacline serve keeps mapped, so that the kernel keeps them in memory; they count in its resident set (0: an eighth of the machine's memory; -1: none)" default:"0"`
	// WarmRefresh is how often tacline serve walks the key indexes again
	// while it keeps their pages mapped (WarmRefreshEvery).
	WarmRefresh time.Duration `yaml:"warm_refresh" doc:"SQLite: how often tacline serve reads the key indexes again and maps the pages they grew into, while it keeps pages mapped (warm_map_mib); 100ms to 24h (0: 10m)" default:"0"`
}

// defaultWarmRefresh is database.warm_refresh's default: at 1,000 devices/s
// a ledger grows by about 0.4 % of 10^7 devices in that time.
const defaultWarmRefresh = 10 * time.Minute

// WarmRefreshEvery is how often a server that keeps the key indexes'
// pages mapped walks them again.
func (c Config) WarmRefreshEvery() time.Duration {
	if c.WarmRefresh == 0 {
		return defaultWarmRefresh
	}
	return c.WarmRefresh
}

// WarmBudget is what DB.Warm may read and keep mapped, in bytes.
type WarmBudget struct {
	Read, Map int64
}

// WarmBudget is the budget of DB.Warm this configuration gives (zero for
// none).
func (c Config) WarmBudget() WarmBudget {
	if c.Driver != SQLite || c.WarmMiB < 0 {
		return WarmBudget{}
	}
	mem := memTotal()
	b := WarmBudget{Read: mem / 4, Map: mem / 8}
	if c.WarmMiB > 0 {
		b.Read = int64(c.WarmMiB) << 20
	}
	switch {
	case c.WarmMapMiB < 0:
		b.Map = 0
	case c.WarmMapMiB > 0:
		b.Map = int64(c.WarmMapMiB) << 20
	}
	return b
}

// Validate reports the first wrong field, named as in the configuration file.
func (c Config) Validate() error {
	switch c.Driver {
	case SQLite, Postgres:
	case "":
		return tacerr.Field(tacerr.InvalidConfig, "database.driver", "is required: sqlite or postgres")
	default:
		return tacerr.Field(tacerr.InvalidConfig, "database.driver", "%q is not supported: use sqlite or postgres", c.Driver)
	}
	if strings.TrimSpace(c.DSN) == "" {
		return tacerr.Field(tacerr.InvalidConfig, "database.dsn", "is required (SQLite: a file path; PostgreSQL: postgres://user@host:port/db)")
	}
	if c.MaxConns < 0 {
		return tacerr.Field(tacerr.InvalidConfig, "database.max_conns", "must not be negative")
	}
	if c.WarmMiB < -1 {
		return tacerr.Field(tacerr.InvalidConfig, "database.warm_mib", "%d: use a size in MiB, 0 for a quarter of the memory or -1 for none", c.WarmMiB)
	}
	if c.WarmMapMiB < -1 {
		return tacerr.Field(tacerr.InvalidConfig, "database.warm_map_mib", "%d: use a size in MiB, 0 for an eighth of the memory or -1 for none", c.WarmMapMiB)
	}
	if c.WarmRefresh != 0 && (c.WarmRefresh < 100*time.Millisecond || c.WarmRefresh > 24*time.Hour) {
		return tacerr.Field(tacerr.InvalidConfig, "database.warm_refresh", "must be between 100ms and 24h (0: the default, 10m), got %s", c.WarmRefresh)
	}
	return nil
}

// DB is an open ledger.
type DB struct {
	dialect Dialect
	sql     dialectSQL // what differs in the queries (dialect.go)
	// w takes write transactions; on SQLite it has exactly one connection
	// (SQLite has one writer at a time), on PostgreSQL it is the only pool.
	w *sqlx.DB
	// r serves reads; on SQLite a separate read-only pool (WAL readers never
	// block the writer), on PostgreSQL the same pool as w.
	r *sqlx.DB
	// now is the clock; tests replace it.
	now func() time.Time
	// sinks record every ledger event in the transaction that made it.
	sinks []Sink
	// committer batches reservations (group commit).
	committer *committer
	// stmts caches prepared statements of the SQLite write connection,
	// rstmts those of the read pool.
	stmts  *stmtCache
	rstmts *readStmts
	// wire counts the round trips (statements and pgx batches) and the
	// statements PostgreSQL write transactions sent (tests of the
	// pipeline).
	wire wireCounts
	// path is a SQLite ledger's file (Warm reads it).
	path string
	// warmMap is the ledger's file as Warm mapped it, to keep the OS pages
	// of the key indexes resident (keepMapped); warmMu guards it.
	warmMu  sync.Mutex
	warmMap []byte
	// ckpt copies a SQLite ledger's WAL into its file (checkpointer.go).
	ckpt *checkpointer
}

// Open opens the ledger and applies pending migrations.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	db := &DB{dialect: cfg.Driver, sql: dialects[cfg.Driver], now: time.Now}
	db.committer = &committer{db: db, wake: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{}), maxBatch: 256, linger: time.Millisecond}
	var err error
	switch cfg.Driver {
	case SQLite:
		err = db.openSQLite(cfg)
	case Postgres:
		err = db.openPostgres(cfg)
	}
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// SQLite drivers with per-connection settings that the DSN cannot carry.
const (
	sqliteWriter = "sqlite3-tacline-writer"
	sqliteReader = "sqlite3-tacline-reader"
)

// newLedgerPageSize is the page size of a ledger this process creates
// (SQLite's default is 4096). Provisioning dirties about one leaf per
// device in each of a dozen b-trees keyed by device serial, request id,
// IMEI (one insertion point per station or pool) or a random value, and
// SQLite writes a dirty page whole into the WAL at commit and again into
// the database at the checkpoint: 1 KiB pages write about half the bytes
// per device that 4 KiB ones do (docs/benchmarks.md, issue 14). The
// size is fixed when the file is created, so it is set before
// journal_mode = WAL; an existing ledger keeps the page size it was
// created with (`PRAGMA page_size` is a no-op on it).
const newLedgerPageSize = 1024

func init() {
	sql.Register(sqliteWriter, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		// temp_store = MEMORY keeps statement journals in memory: a
		// multi-row statement inside a transaction journals the pages it
		// changes so that it can be undone alone, and past 64 KiB SQLite
		// spilled that journal to a deleted file in /var/tmp (about 40 % of
		// the writer's write syscalls and bytes under provisioning, see
		// docs/benchmarks.md). The journal is thrown away at commit, so
		// nothing durable changes.
		//
		// The writer opens the ledger first: on a new file it sets the page
		// size, which must come before journal_mode = WAL (the writer's DSN
		// leaves the journal mode to this hook for that reason).
		if _, err := c.Exec(fmt.Sprintf("PRAGMA page_size = %d; PRAGMA journal_mode = WAL; PRAGMA temp_store = MEMORY", newLedgerPageSize), nil); err != nil {
			return err
		}
		size, err := pragmaInt(c, "PRAGMA page_size")
		if err != nil || size <= 0 {
			return fmt.Errorf("read the ledger's page size: %d, %v", size, err)
		}
		_, err = c.Exec(fmt.Sprintf("PRAGMA wal_autocheckpoint = %d", checkpointBackstopBytes/size), nil)
		return err
	}})
	// Readers map the database file: pages not in the WAL are read
	// without a system call each (SQLite clears a reader's page cache
	// whenever the writer committed since its last read).
	sql.Register(sqliteReader, &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		_, err := c.Exec("PRAGMA mmap_size = 268435456", nil)
		return err
	}})
	sqlx.BindDriver(sqliteWriter, sqlx.QUESTION)
	sqlx.BindDriver(sqliteReader, sqlx.QUESTION)
}

// pragmaInt reads a PRAGMA that returns one integer, on a connection being
// set up.
func pragmaInt(c *sqlite3.SQLiteConn, q string) (int64, error) {
	rows, err := c.Query(q, nil)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	v := make([]driver.Value, 1)
	if err := rows.Next(v); err != nil {
		return 0, err
	}
	n, ok := v[0].(int64)
	if !ok {
		return 0, fmt.Errorf("%s returned %T", q, v[0])
	}
	return n, nil
}

// sqliteReaders is the number of read-only connections of a SQLite ledger.
const sqliteReaders = 4

func (db *DB) openSQLite(cfg Config) error {
	path := sqlitePath(cfg.DSN)
	common := "_busy_timeout=10000&_foreign_keys=on&_synchronous=FULL"
	// The writer keeps up to 64 MiB of pages (SQLite's default is 2 MiB): the
	// indexes that provisioning inserts into at random places (certificate
	// serials, device keys) stay in memory instead of being read back.
	// The writer's files go through the write-coalescing VFS
	// (coalesce_vfs.go): the same bytes and fsyncs, fewer system calls.
	w, err := sqlx.Open(sqliteWriter, sqlitefile.URI(path, common+"&_txlock=immediate&_cache_size=-65536&vfs="+coalesceVFS))
	if err != nil {
		return tacerr.Wrap(tacerr.Unavailable, err, "open SQLite ledger %s", path)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	if err := w.Ping(); err != nil {
		w.Close()
		return tacerr.Wrap(tacerr.Unavailable, err, "open SQLite ledger %s (check the directory exists and is writable)", path)
	}
	r, err := sqlx.Open(sqliteReader, sqlitefile.URI(path, common+"&_journal_mode=WAL&mode=ro"))
	if err != nil {
		w.Close()
		return tacerr.Wrap(tacerr.Unavailable, err, "open SQLite ledger %s for reading", path)
	}
	// Every reader stays open: database/sql keeps 2 idle connections by
	// default, so with 4 in use under load it closed the others as they
	// went idle and opened new ones on the next burst (each a file open,
	// its mmap pragma, the schema parsed again and every read statement
	// prepared again on it).
	r.SetMaxOpenConns(sqliteReaders)
	r.SetMaxIdleConns(sqliteReaders)
	r.SetConnMaxLifetime(0)
	ckpt, err := startCheckpointer(sqlitefile.URI(path, common+"&vfs="+coalesceVFS))
	if err != nil {
		w.Close()
		r.Close()
		return tacerr.Wrap(tacerr.Unavailable, err, "open SQLite ledger %s for checkpoints", path)
	}
	db.w, db.r, db.path, db.ckpt = w, r, path, ckpt
	db.stmts = &stmtCache{db: w, stmts: map[string]*sqlx.Stmt{}, pending: map[string]bool{}}
	db.rstmts = &readStmts{db: r, stmts: map[string]*sqlx.Stmt{}}
	return nil
}

func (db *DB) openPostgres(cfg Config) error {
	p, err := sqlx.Open("pgx", cfg.DSN)
	if err != nil {
		return tacerr.Wrap(tacerr.Unavailable, err, "open PostgreSQL ledger")
	}
	n := cfg.MaxConns
	if n == 0 {
		n = 16
	}
	p.SetMaxOpenConns(n)
	p.SetMaxIdleConns(n)
	p.SetConnMaxIdleTime(5 * time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.PingContext(ctx); err != nil {
		p.Close()
		return tacerr.Wrap(tacerr.Unavailable, err, "connect to PostgreSQL ledger at %s", redactDSN(cfg.DSN))
	}
	db.w, db.r = p, p
	return nil
}

// redactDSN removes a password from a DSN so that it can be logged.
func redactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return "(dsn)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxx")
	}
	return u.String()
}

// Close closes the database pools.
func (db *DB) Close() error {
	db.committer.close()
	if db.stmts != nil {
		db.stmts.close()
		db.rstmts.close()
	}
	var errs []error
	if db.ckpt != nil {
		errs = append(errs, db.ckpt.close())
	}
	if db.r != nil && db.r != db.w {
		errs = append(errs, db.r.Close())
	}
	if db.w != nil {
		errs = append(errs, db.w.Close())
	}
	db.releaseWarmMap()
	return errors.Join(errs...)
}

// releaseWarmMap unmaps what Warm kept mapped (keepMapped).
func (db *DB) releaseWarmMap() {
	db.warmMu.Lock()
	defer db.warmMu.Unlock()
	if db.warmMap != nil {
		_ = unix.Munmap(db.warmMap)
		db.warmMap = nil
	}
}

// Dialect returns the database kind.
func (db *DB) Dialect() Dialect { return db.dialect }

// SetClock replaces the clock (tests).
func (db *DB) SetClock(now func() time.Time) { db.now = now }

// Now returns the store's clock reading in UTC.
func (db *DB) Now() time.Time { return db.now().UTC() }

// Ping checks that the database answers (for readiness probes).
func (db *DB) Ping(ctx context.Context) error {
	if err := db.w.PingContext(ctx); err != nil {
		return tacerr.Wrap(tacerr.Unavailable, err, "ledger database does not answer")
	}
	return nil
}

// Tx is a ledger transaction. Other packages never see its SQL: they call
// its typed methods (the audit log's and the register outbox's appenders,
// the use cases' state changes), so that their rows commit or roll back
// with the ledger's.
type Tx struct {
	tx     txRunner
	db     *DB
	events []Event
	write  bool // a write transaction on the write pool
	// pipe queues writes until the next statement that returns rows
	// (PostgreSQL write transactions, dialect pipeline; pipeline.go).
	pipe *pipeline
	// audit is where the audit log put the events of the current flush
	// (AppendAudit), for the sinks after it (the site outbox).
	audit auditSpan
	// tacNames are catalogue names read by a statement of tx (TACNamesOf).
	tacNames map[uint32]TACName
}

// rebind rewrites ? placeholders for the transaction's database (DB.rebind).
func (tx *Tx) rebind(q string) string { return tx.db.rebind(q) }

// Now returns the store's clock reading.
func (tx *Tx) Now() time.Time { return tx.db.Now() }

// txRetry is InTx's policy for a transaction that conflicted: at most 8
// attempts, waits of up to 2 ms doubling to 128 ms, with jitter.
var txRetry = retry.Policy{Initial: 2 * time.Millisecond, Max: 128 * time.Millisecond, Attempts: 8}

// InTx runs fn in one write transaction and commits it. Serialization
// failures, deadlocks and SQLite busy errors roll back and rerun fn (by
// txRetry); fn must therefore have no effects outside the transaction. Any
// other error rolls back and is returned, translated (Translate): a lost
// database is unavailable and retryable by the caller, never rerun here,
// because a commit that failed that way may have committed.
func (db *DB) InTx(ctx context.Context, fn func(tx *Tx) error) error {
	run := txRetry.Start(time.Now())
	for {
		err := db.inTxOnce(ctx, fn)
		if db.stmts != nil {
			db.stmts.prepare()
		}
		if err == nil || !isRetryableDBError(err) {
			return err
		}
		wait, ok := run.Next(time.Now(), 0)
		if !ok {
			return tacerr.Wrap(tacerr.Unavailable, err, "ledger transaction kept conflicting; retry later")
		}
		if retry.Sleep(ctx, wait) != nil {
			return tacerr.Wrap(tacerr.Unavailable, ctx.Err(), "ledger transaction abandoned after %d attempts: %v", run.Failures(), err)
		}
	}
}

func (db *DB) inTxOnce(ctx context.Context, fn func(tx *Tx) error) error {
	if db.sql.pipeline {
		return db.inPipedTx(ctx, fn)
	}
	stx, err := db.w.BeginTxx(ctx, nil)
	if err != nil {
		return translate(err, "begin ledger transaction")
	}
	return runTx(&Tx{tx: stx, db: db, write: true}, fn, func() error {
		if err := stx.Commit(); err != nil {
			return translate(err, "commit ledger transaction")
		}
		return nil
	}, func() { stx.Rollback() })
}

// runTx runs fn in tx, the sinks' writes (flush), then commit; a failure
// or a panic calls rollback.
func runTx(tx *Tx, fn func(tx *Tx) error, commit func() error, rollback func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			rollback()
			panic(r)
		}
		if err != nil {
			rollback()
		}
	}()
	if err = fn(tx); err != nil {
		return err
	}
	if err = tx.flush(); err != nil {
		return err
	}
	return commit()
}

// inPipedTx is inTxOnce on PostgreSQL (dialect pipeline): the transaction
// runs on a connection of its own, so that its writes can be queued and
// sent as pgx batches (pipeline.go), and its BEGIN and COMMIT are queued
// the same way: BEGIN goes with the transaction's first statements, COMMIT
// with its last writes when the server alone decides them (pipeline.commit),
// each in their round trip, not in one of its own.
// The statements, their order and the durable commit are the same.
func (db *DB) inPipedTx(ctx context.Context, fn func(tx *Tx) error) error {
	conn, err := db.w.Connx(ctx)
	if err != nil {
		return translate(err, "begin ledger transaction")
	}
	// A connection whose rollback failed is left in a transaction; the
	// driver discards such a connection when it is handed back
	// (stdlib.Conn.ResetSession).
	defer conn.Close()
	p := &pipeline{ctx: ctx, conn: conn, trips: &db.wire}
	p.queued = append(p.queued, pipedWrite{query: "BEGIN", fail: func(err error) error {
		return translate(err, "begin ledger transaction")
	}})
	return runTx(&Tx{tx: connTx{ctx: ctx, c: conn, trips: &db.wire}, db: db, write: true, pipe: p}, fn, p.commit, p.rollback)
}

// noRows reports whether err is sql.ErrNoRows.
func noRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }

// in expands a query with IN (?) for a slice and rebinds it for tx's
// dialect. On PostgreSQL (dialect arrayParams) the slice is sent as one
// array parameter, IN (?) becoming = ANY(?): the statement's text, and so
// pgx's prepared statement and the server's plan, is the same for any
// number of values, where an expanded list made a new statement (one more
// round trip to prepare it, and a fresh plan) for every length.
func (tx *Tx) in(query string, args ...any) (string, []any, error) {
	if tx.db.sql.arrayParams {
		if q, ok := anyArrays(query, args); ok {
			return tx.rebind(q), args, nil
		}
	}
	q, a, err := sqlx.In(query, args...)
	if err != nil {
		return "", nil, fmt.Errorf("expand query: %w", err)
	}
	return tx.rebind(q), a, nil
}

// anyArrays rewrites each "IN (?)" whose argument is a slice of strings or
// int64s into "= ANY(?)"; ok is false (nothing rewritten) when a slice
// argument has another type or another placeholder shape, for sqlx.In.
func anyArrays(query string, args []any) (string, bool) {
	var b strings.Builder
	rest := query
	for _, a := range args {
		i := strings.IndexByte(rest, '?')
		if i < 0 {
			return "", false
		}
		switch a.(type) {
		case []string, []int64:
			if !strings.HasSuffix(rest[:i], "IN (") || !strings.HasPrefix(rest[i:], "?)") {
				return "", false
			}
			b.WriteString(rest[:i-len("IN (")])
			b.WriteString("= ANY(?)")
			rest = rest[i+2:]
		default:
			b.WriteString(rest[:i+1])
			rest = rest[i+1:]
		}
	}
	if strings.IndexByte(rest, '?') >= 0 {
		return "", false
	}
	b.WriteString(rest)
	return b.String(), true
}

func init() {
	rawsql.Reader = func(db any) *sqlx.DB { return db.(*DB).r }
	rawsql.Tx = func(tx any) rawsql.Runner {
		// A raw statement runs after the writes queued before it; their
		// failure fails it (the transaction is aborted).
		t := tx.(*Tx)
		t.sync()
		return t.tx
	}
}

// sqlxIn expands a query with IN (?) for a slice (not rebound).
func sqlxIn(query string, args ...any) (string, []any, error) {
	q, a, err := sqlx.In(query, args...)
	if err != nil {
		return "", nil, tacerr.Wrap(tacerr.Internal, err, "expand query")
	}
	return q, a, nil
}
