package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/tacline/tacline/tacerr"
)

// A restored ledger comes from a backup set whose manifest of hashes anyone
// who can write the set can recompute. Its data is proven afterwards
// (ledger check, the audit log against known checkpoints), but a schema
// object added to or changed in the file (a trigger that quietly undoes a
// binding, a view, a guard dropped) would pass those and act on every later
// write. So before the restored SQLite ledger is opened for writing, its
// schema must be exactly the one tacline's migrations give a new ledger at
// the same migration version: same tables, indexes, triggers and views, each
// with the same SQL.

const (
	qSQLiteSchema  = `SELECT type, name, tbl_name, COALESCE(sql, '') FROM sqlite_schema ORDER BY type, name`
	qGooseVersion  = `SELECT COALESCE(MAX(version_id), 0) FROM goose_db_version WHERE is_applied`
	qHasGooseTable = `SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'goose_db_version'`
)

// schemaObject is one row of sqlite_schema.
type schemaObject struct {
	typ, name, table, sql string
}

// key is how two schemas' objects are matched.
func (o schemaObject) key() string { return o.typ + " " + o.name }

// readSQLiteSchema reads the objects of the ledger on c, without SQLite's
// own (sqlite_sequence, sqlite_stat*, the automatic indexes of UNIQUE and
// PRIMARY KEY constraints, which their tables' SQL defines): no trigger or
// view can have a name starting with "sqlite_". Runs of white space in the
// SQL count as one space.
func readSQLiteSchema(ctx context.Context, c *sql.DB) (map[string]schemaObject, error) {
	rows, err := c.QueryContext(ctx, qSQLiteSchema)
	if err != nil {
		return nil, translate(err, "read the schema")
	}
	defer rows.Close()
	out := map[string]schemaObject{}
	for rows.Next() {
		var o schemaObject
		if err := rows.Scan(&o.typ, &o.name, &o.table, &o.sql); err != nil {
			return nil, translate(err, "read the schema")
		}
		if (o.typ == "table" || o.typ == "index") && strings.HasPrefix(o.name, "sqlite_") {
			continue
		}
		if o.typ == "table" && o.name == "goose_db_version" {
			o.sql = "" // goose's own table: its SQL is goose's, of whichever version made the ledger
		}
		o.sql = strings.Join(strings.Fields(o.sql), " ")
		out[o.key()] = o
	}
	return out, translate(rows.Err(), "read the schema")
}

// checkSQLiteSchema compares the schema of the ledger on c (a restored
// copy, opened read-only) with the schema tacline's migrations give a new
// ledger at its migration version, and names the first difference
// (ledger_invariant).
func checkSQLiteSchema(ctx context.Context, c *sql.DB, path string) error {
	var n int
	if err := c.QueryRowContext(ctx, qHasGooseTable).Scan(&n); err != nil {
		return translate(err, "read the schema")
	}
	if n == 0 {
		return tacerr.New(tacerr.LedgerInvariant, "restored file %s is not a tacline ledger (it has no migration history, goose_db_version)", path)
	}
	var version int64
	if err := c.QueryRowContext(ctx, qGooseVersion).Scan(&version); err != nil {
		return translate(err, "read the ledger's migration version")
	}
	got, err := readSQLiteSchema(ctx, c)
	if err != nil {
		return err
	}
	want, err := sqliteSchemaAt(ctx, version)
	if err != nil {
		return err
	}
	var diffs []string
	for k, o := range got {
		w, ok := want[k]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%s %q (on %s) is not in tacline's schema: %s", o.typ, o.name, o.table, clip(o.sql, 200)))
		case w.sql != o.sql || w.table != o.table:
			diffs = append(diffs, fmt.Sprintf("%s %q differs from tacline's: %s", o.typ, o.name, clip(o.sql, 200)))
		}
	}
	for k, w := range want {
		if _, ok := got[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s %q of tacline's schema is missing", w.typ, w.name))
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	sort.Strings(diffs)
	return tacerr.New(tacerr.LedgerInvariant, "restored file %s does not have the schema of a tacline ledger at migration %d (%d difference(s); the first: %s): the backup set was altered after it was made, or made by something else; restore another set and find out who could write this one",
		path, version, len(diffs), diffs[0])
}

// sqliteSchemaAt returns the schema tacline's SQLite migrations up to
// version give a new ledger (made in a temporary directory).
func sqliteSchemaAt(ctx context.Context, version int64) (map[string]schemaObject, error) {
	dir, err := os.MkdirTemp("", "tacline-schema-")
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Unavailable, err, "make a reference ledger to compare the schema with")
	}
	defer os.RemoveAll(dir)
	c, err := sql.Open("sqlite3", filepath.Join(dir, "ref.db"))
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Unavailable, err, "make a reference ledger to compare the schema with")
	}
	defer c.Close()
	p, err := migrationsOn(SQLite, c)
	if err != nil {
		return nil, err
	}
	if _, latest, err := p.GetVersions(ctx); err == nil && version > latest {
		return nil, tacerr.New(tacerr.InvalidState, "the restored ledger is at migration %d, newer than this tacline's %d: restore it with the tacline that made the backup, or a newer one", version, latest)
	}
	if _, err := p.UpTo(ctx, version); err != nil {
		return nil, tacerr.Wrap(tacerr.Internal, err, "migrate a reference ledger to %d", version)
	}
	return readSQLiteSchema(ctx, c)
}

// clip shortens s to n bytes for a message.
func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
