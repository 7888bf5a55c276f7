// Package pgadmin creates and drops throwaway PostgreSQL databases for tests
// and benchmarks. It never touches a database it did not create: names are
// random with a fixed prefix.
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
	if _, err := adb.ExecContext(cctx, "CREATE DATABASE "+name); err != nil {
		adb.Close()
		return "", nil, fmt.Errorf("create database %s: %w", name, err)
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
	u, err := url.Parse(dsn)
	if err != nil {
		return err
	}
	name := strings.TrimPrefix(u.Path, "/")
	if !strings.HasPrefix(name, Prefix) || strings.ContainsAny(name, "\" ;") {
		return fmt.Errorf("database %q was not made by pgadmin (its name does not start with %s)", name, Prefix)
	}
	adb, err := sql.Open("pgx", adminDSN)
	if err != nil {
		return err
	}
	defer adb.Close()
	_, err = adb.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	return err
}

// BackendPIDs lists the server processes (backends) connected to the
// database of dsn, read through adminDSN (benchmarks add their CPU time).
func BackendPIDs(ctx context.Context, adminDSN, dsn string) ([]int, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("pgx", adminDSN)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = $1`, strings.TrimPrefix(u.Path, "/"))
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
