// Package pgadmin creates and drops throwaway PostgreSQL databases for tests
// and benchmarks. It never touches a database it did not create: names are
// random with a fixed prefix.
//
// Each database it creates carries its creator in its comment (host, boot,
// process id and the process's start time). A process killed before it
// dropped its database (a test binary at its timeout, a benchmark stopped
// with SIGKILL) left it behind for good; now the next CreateDatabase on
// the same machine, in the same boot, drops every such database whose
// creator is gone and to which nobody is connected. A database a benchmark
// keeps on purpose (Keep) is marked kept and never swept; one without a
// creator comment (made by an older version), made on another machine or
// in an earlier boot is left alone.
package pgadmin

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver
)

// Prefix starts the name of every database this package creates.
const Prefix = "tacline_tmp_"

// CreateDatabase creates a fresh, randomly named database on the server
// reached through adminDSN (a URL DSN) and returns its DSN and a function
// that drops it.
func CreateDatabase(ctx context.Context, adminDSN string) (dsn string, drop func() error, err error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nil, err
	}
	name := Prefix + hex.EncodeToString(b[:])
	u, err := url.Parse(adminDSN)
	if err != nil || u.Scheme == "" {
		return "", nil, fmt.Errorf("admin DSN must be a postgres:// URL")
	}
	adb, err := sql.Open("pgx", adminDSN)
	if err != nil {
		return "", nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	sweep(cctx, adb)
	if _, err := adb.ExecContext(cctx, "CREATE DATABASE "+name); err != nil {
		adb.Close()
		return "", nil, fmt.Errorf("create database %s: %w", name, err)
	}
	if me, ok := self(); ok {
		if _, err := adb.ExecContext(cctx, "COMMENT ON DATABASE "+name+" IS '"+me.String()+"'"); err != nil {
			adb.ExecContext(cctx, "DROP DATABASE IF EXISTS "+name)
			adb.Close()
			return "", nil, fmt.Errorf("record the creator of database %s: %w", name, err)
		}
	}
	u.Path = "/" + name
	drop = func() error {
		defer adb.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := adb.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		return err
	}
	return u.String(), drop, nil
}

// DropDatabase drops the database of dsn, one this package created (its
// name starts with Prefix), through adminDSN.
func DropDatabase(ctx context.Context, adminDSN, dsn string) error {
	return onOwn(ctx, adminDSN, dsn, func(name string) string { return "DROP DATABASE IF EXISTS " + name + " WITH (FORCE)" })
}

// Keep marks the database of dsn, one this package created, as kept on
// purpose (a prefilled benchmark ledger kept for --remeasure): no sweep
// drops it once its creator has exited. Drop it with DropDatabase or
// dropdb when done.
func Keep(ctx context.Context, adminDSN, dsn string) error {
	return onOwn(ctx, adminDSN, dsn, func(name string) string { return "COMMENT ON DATABASE " + name + " IS '" + keptComment + "'" })
}

// onOwn runs, through adminDSN, the statement stmt makes for the database
// of dsn, one this package created.
func onOwn(ctx context.Context, adminDSN, dsn string, stmt func(name string) string) error {
	name, err := ownName(dsn)
	if err != nil {
		return err
	}
	adb, err := sql.Open("pgx", adminDSN)
	if err != nil {
		return err
	}
	defer adb.Close()
	_, err = adb.ExecContext(ctx, stmt(name))
	return err
}

// ownName is the name of the database of dsn if this package made it.
func ownName(dsn string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", err
	}
	name := strings.TrimPrefix(u.Path, "/")
	if !strings.HasPrefix(name, Prefix) || strings.ContainsAny(name, "\" ;'") {
		return "", fmt.Errorf("database %q was not made by pgadmin (its name does not start with %s)", name, Prefix)
	}
	return name, nil
}

// BackendPIDs lists the server processes (backends) connected to the
// database of dsn, read through adminDSN (benchmarks add their CPU time).
func BackendPIDs(ctx context.Context, adminDSN, dsn string) ([]int, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, err
	}
	return pids(ctx, adminDSN, `SELECT pid FROM pg_stat_activity WHERE datname = $1`, strings.TrimPrefix(u.Path, "/"))
}

// Stats are a PostgreSQL server's counters that explain what a workload
// cost it beyond CPU (benchmarks read them before and after a run and
// divide the difference by the devices made). WALBytes comes from the WAL
// insert position and is exact; the others are the cumulative statistics
// views, which a backend flushes at most once a second and when it exits,
// so read them after the workload's connections have closed.
type Stats struct {
	WALBytes          int64 // pg_current_wal_insert_lsn(), cluster-wide
	WALRecords        int64 // pg_stat_wal, cluster-wide
	WALFPI            int64 // full-page images written to the WAL (pg_stat_wal)
	BlocksRead        int64 // the database's blocks not found in shared buffers (pg_stat_database)
	BlocksHit         int64 // and found there
	BuffersBackend    int64 // dirty buffers a backend had to write itself to make room (pg_stat_bgwriter)
	BuffersCheckpoint int64 // buffers the checkpointer wrote
	BuffersClean      int64 // buffers the background writer wrote
	Checkpoints       int64 // timed and requested
}

// ReadStats reads Stats for the database of dsn through adminDSN.
func ReadStats(ctx context.Context, adminDSN, dsn string) (Stats, error) {
	var s Stats
	u, err := url.Parse(dsn)
	if err != nil {
		return s, err
	}
	db, err := sql.Open("pgx", adminDSN)
	if err != nil {
		return s, err
	}
	defer db.Close()
	err = db.QueryRowContext(ctx, `SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint, w.wal_records, w.wal_fpi,
		d.blks_read, d.blks_hit, b.buffers_backend, b.buffers_checkpoint, b.buffers_clean,
		b.checkpoints_timed + b.checkpoints_req
		FROM pg_stat_wal w, pg_stat_bgwriter b, pg_stat_database d WHERE d.datname = $1`,
		strings.TrimPrefix(u.Path, "/")).Scan(&s.WALBytes, &s.WALRecords, &s.WALFPI, &s.BlocksRead, &s.BlocksHit,
		&s.BuffersBackend, &s.BuffersCheckpoint, &s.BuffersClean, &s.Checkpoints)
	return s, err
}

// Sub returns s minus o, counter by counter.
func (s Stats) Sub(o Stats) Stats {
	return Stats{s.WALBytes - o.WALBytes, s.WALRecords - o.WALRecords, s.WALFPI - o.WALFPI, s.BlocksRead - o.BlocksRead,
		s.BlocksHit - o.BlocksHit, s.BuffersBackend - o.BuffersBackend, s.BuffersCheckpoint - o.BuffersCheckpoint,
		s.BuffersClean - o.BuffersClean, s.Checkpoints - o.Checkpoints}
}

// AuxPIDs lists the server's own writers (checkpointer, background writer,
// WAL writer), whose CPU a write-heavy workload also causes.
func AuxPIDs(ctx context.Context, adminDSN string) ([]int, error) {
	return pids(ctx, adminDSN, `SELECT pid FROM pg_stat_activity WHERE backend_type IN ('checkpointer', 'background writer', 'walwriter')`)
}

// pids runs query, which selects process ids, through adminDSN.
func pids(ctx context.Context, adminDSN, query string, args ...any) ([]int, error) {
	db, err := sql.Open("pgx", adminDSN)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			return nil, err
		}
		out = append(out, pid)
	}
	return out, rows.Err()
}
