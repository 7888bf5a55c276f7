package store

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tacline/tacline/tacerr"
)

// A PostgreSQL backup is a pg_dump archive, and pg_restore runs whatever
// SQL its TOC holds (a trigger, a function, an event trigger, a COPY to
// another table or to a program) as the role of database.dsn. The
// restored data is proven afterwards, but that SQL would have run and
// stayed. So the archive is judged before pg_restore runs anything of it:
// its TOC (pgarchive.go) must be, entry for entry and in the same order,
// the TOC pg_dump gives for tacline's migrations at the dump's migration
// version, migrated into a scratch schema of the target database and
// dumped by the same pg_dump. Only the values of sequences (SEQUENCE SET)
// and the rows of the data blocks may differ; every entry with data must
// be a COPY into its own table with tacline's columns.

// pgScratchPrefix starts the name of the scratch schema a restore migrates
// its reference into (and drops).
const pgScratchPrefix = "tacline_ref_"

// pgSetval is a SEQUENCE SET entry's definition; its value and is_called
// are data.
var pgSetval = regexp.MustCompile(`^SELECT pg_catalog\.setval\('([^'\\]+)', [0-9]+, (true|false)\);\n$`)

// pgGooseCopy is the COPY statement of goose's table; its columns are
// read from it.
var pgGooseCopy = regexp.MustCompile(`^COPY public\.goose_db_version \(([a-z_, ]+)\) FROM stdin;\n$`)

// checkPostgresDump refuses the dump in file, before anything of it runs,
// unless its TOC is the one tacline's migrations give at its migration
// version (ledger_invariant names the first difference; a dump newer than
// this tacline is invalid_state). c and dsn reach the (empty) target
// database, where the reference is migrated in a scratch schema that is
// dropped before it returns.
func checkPostgresDump(ctx context.Context, c *sql.DB, dsn, file string) error {
	got, err := readPGArchive(file)
	if err != nil {
		return err
	}
	for _, v := range []string{got.remoteVersion, got.dumpVersion} {
		if strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return tacerr.New(tacerr.LedgerInvariant, "the backup's dump %s names its versions with control characters (%q), which pg_restore would send as SQL: the backup set was altered after it was made; nothing of it was restored. Restore another set and find out who could write this one", file, v)
		}
	}
	version, err := dumpMigration(ctx, file, got)
	if err != nil {
		return err
	}
	want, err := postgresReferenceAt(ctx, c, dsn, version)
	if err != nil {
		return err
	}
	if got.version != want.version {
		return tacerr.New(tacerr.InvalidState, "the backup's dump %s is a pg_dump archive of format %s, this machine's pg_dump writes %s: restore with the PostgreSQL client tools of the version that made the backup (a schema dumped by another pg_dump cannot be compared)", file, archVersion(got.version), archVersion(want.version))
	}
	diffs := compareTOC(got.entries, want.entries)
	if len(diffs) == 0 {
		return nil
	}
	more := ""
	if len(diffs) > 1 {
		more = "; the next: " + strings.Join(diffs[1:min(len(diffs), 4)], "; ")
		if len(diffs) > 4 {
			more += "; ..."
		}
	}
	return tacerr.New(tacerr.LedgerInvariant, "the backup's dump %s does not have the schema of a tacline ledger at migration %d (%d difference(s); the first: %s%s): the backup set was altered after it was made, or made by something else; nothing of it was restored. Restore another set and find out who could write this one",
		file, version, len(diffs), diffs[0], more)
}

func archVersion(v int) string { return fmt.Sprintf("%d.%d-%d", v>>16, v>>8&0xff, v&0xff) }

// tocKey is how two TOCs' entries are matched: type, schema, name.
func tocKey(e pgEntry) string { return e.desc + "\x00" + e.namespace + "\x00" + e.tag }

// tocEntries drops the entries of the database itself that pg_dump
// always writes: the DATABASE entry, its settings (DATABASE PROPERTIES:
// ALTER DATABASE ... SET) and its comment, security label and grants (an
// ACL, COMMENT or SECURITY LABEL entry tagged "DATABASE name"). pg_restore
// runs exactly these only with --create (_tocEntryRequired), which Restore
// never gives, so a restore into an existing database keeps its own; and
// they differ from database to database: a database an operator commented
// or tuned (ALTER DATABASE tacline SET statement_timeout ...) must not make
// its own backup look altered. Every other entry is compared, whatever its
// tag.
func tocEntries(es []pgEntry) []pgEntry {
	var out []pgEntry
	for _, e := range es {
		switch {
		case e.desc == "DATABASE" || e.desc == "DATABASE PROPERTIES":
			continue
		case (e.desc == "ACL" || e.desc == "COMMENT" || e.desc == "SECURITY LABEL") && strings.HasPrefix(e.tag, "DATABASE "):
			continue
		}
		out = append(out, e)
	}
	return out
}

// compareTOC lists how got differs from want: entries not in want, entries
// that differ from want's, entries of want missing, in TOC order; and, when
// the entries are the same, where their order differs.
func compareTOC(got, want []pgEntry) []string {
	got, want = tocEntries(got), tocEntries(want)
	byKey := map[string]pgEntry{}
	for _, w := range want {
		byKey[tocKey(w)] = w
	}
	seen := map[string]bool{}
	var diffs []string
	for _, e := range got {
		k := tocKey(e)
		w, ok := byKey[k]
		switch {
		case seen[k]:
			diffs = append(diffs, fmt.Sprintf("%s is in the dump twice", e.name()))
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%s is not in tacline's schema: %s", e.name(), clip(strings.Join(strings.Fields(e.defn+e.copyStmt), " "), 200)))
		default:
			if d := entryDiff(e, w); d != "" {
				diffs = append(diffs, fmt.Sprintf("%s differs from tacline's: %s", e.name(), d))
			}
		}
		seen[k] = true
	}
	for _, w := range want {
		if !seen[tocKey(w)] {
			diffs = append(diffs, fmt.Sprintf("%s of tacline's schema is missing", w.name()))
		}
	}
	if len(diffs) == 0 {
		for i := range got {
			if tocKey(got[i]) != tocKey(want[i]) {
				diffs = append(diffs, fmt.Sprintf("the dump's entries are in another order than tacline's: %s where tacline's has %s", got[i].name(), want[i].name()))
				break
			}
		}
	}
	return diffs
}

// entryDiff says how e differs from w (its reference), or "".
func entryDiff(e, w pgEntry) string {
	if e.desc == "SEQUENCE SET" {
		// The value is data; the sequence named must be the entry's own.
		m, mw := pgSetval.FindStringSubmatch(e.defn), pgSetval.FindStringSubmatch(w.defn)
		if m == nil || mw == nil || m[1] != mw[1] {
			return "its definition is not a setval of " + strconv.Quote(w.tag) + ": " + clip(e.defn, 200)
		}
	} else if e.defn != w.defn {
		return "its definition, " + lineDiff(e.defn, w.defn)
	}
	for _, f := range []struct{ what, got, want string }{
		{"its COPY statement", e.copyStmt, w.copyStmt},
		{"its drop statement", e.dropStmt, w.dropStmt},
		{"its tablespace", e.tablespace, w.tablespace},
		{"its table access method", e.tableAM, w.tableAM},
		{"its WITH OIDS", e.withOids, w.withOids},
	} {
		if f.got != f.want {
			return fmt.Sprintf("%s is %q, tacline's %q", f.what, clip(f.got, 200), clip(f.want, 200))
		}
	}
	switch {
	case e.hadDumper != w.hadDumper:
		return fmt.Sprintf("it has data: %v, tacline's: %v", e.hadDumper, w.hadDumper)
	case e.section != w.section:
		return fmt.Sprintf("its section is %d, tacline's %d", e.section, w.section)
	case e.relkind != w.relkind:
		return fmt.Sprintf("its relation kind is %d, tacline's %d", e.relkind, w.relkind)
	}
	return ""
}

// lineDiff names the first line where got differs from want.
func lineDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range g {
		if i >= len(w) {
			return fmt.Sprintf("line %d is not in tacline's: %q", i+1, clip(g[i], 200))
		}
		if g[i] != w[i] {
			return fmt.Sprintf("line %d is %q, tacline's %q", i+1, clip(g[i], 200), clip(w[i], 200))
		}
	}
	return fmt.Sprintf("it ends at line %d, tacline's goes on: %q", len(g), clip(w[len(g)], 200))
}

// dumpMigration reads the dump's migration version: the highest applied
// version_id of its goose_db_version data, read through pg_restore into
// this process (nothing runs).
func dumpMigration(ctx context.Context, file string, a *pgArchive) (int64, error) {
	var goose *pgEntry
	for i, e := range a.entries {
		if e.desc == "TABLE DATA" && e.namespace == "public" && e.tag == "goose_db_version" {
			goose = &a.entries[i]
		}
	}
	var m []string
	if goose != nil {
		m = pgGooseCopy.FindStringSubmatch(goose.copyStmt)
	}
	if m == nil {
		return 0, tacerr.New(tacerr.LedgerInvariant, "the backup's dump %s is not a tacline ledger (it has no migration history, goose_db_version data)", file)
	}
	list, err := os.CreateTemp("", "tacline-restore-list-")
	if err != nil {
		return 0, tacerr.Wrap(tacerr.Unavailable, err, "read the dump's migration version")
	}
	defer os.Remove(list.Name())
	_, err = fmt.Fprintf(list, "%d;\n", goose.dumpID)
	if cerr := list.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, tacerr.Wrap(tacerr.Unavailable, err, "read the dump's migration version")
	}
	out, err := output(ctx, 4<<20, "pg_restore", "--data-only", "--use-list", list.Name(), "--file", "-", file)
	if err != nil {
		return 0, err
	}
	cols := strings.Split(m[1], ", ")
	vi, ai := -1, -1
	for i, c := range cols {
		switch c {
		case "version_id":
			vi = i
		case "is_applied":
			ai = i
		}
	}
	bad := func(why string) (int64, error) {
		return 0, tacerr.New(tacerr.LedgerInvariant, "the backup's dump %s: its migration history (goose_db_version) %s: the backup set was altered after it was made, or made by something else; restore another set", file, why)
	}
	if vi < 0 || ai < 0 {
		return bad("has no version_id and is_applied columns")
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	in := false
	var version int64
	for sc.Scan() {
		line := sc.Text()
		switch {
		case !in:
			in = line+"\n" == goose.copyStmt
		case line == `\.`:
			return version, nil
		default:
			f := strings.Split(line, "\t")
			if len(f) != len(cols) {
				return bad(fmt.Sprintf("has a row of %d columns, not %d", len(f), len(cols)))
			}
			v, err := strconv.ParseInt(f[vi], 10, 64)
			if err != nil {
				return bad(fmt.Sprintf("has a version_id %q", f[vi]))
			}
			if f[ai] == "t" {
				version = max(version, v)
			}
		}
	}
	return bad("cannot be read")
}

// postgresReferenceAt returns the TOC pg_dump gives for tacline's
// PostgreSQL migrations up to version: migrated into a scratch schema of
// the database on c (reached with dsn), dumped with --schema, read, its
// schema renamed public, and the schema dropped (on every path).
func postgresReferenceAt(ctx context.Context, c *sql.DB, dsn string, version int64) (a *pgArchive, err error) {
	p, err := migrationsOn(Postgres, c)
	if err != nil {
		return nil, err
	}
	sources := p.ListSources()
	if latest := sources[len(sources)-1].Version; version > latest {
		return nil, tacerr.New(tacerr.InvalidState, "the backup's ledger is at migration %d, newer than this tacline's %d: restore it with the tacline that made the backup, or a newer one", version, latest)
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, tacerr.Wrap(tacerr.Internal, err, "name a scratch schema")
	}
	schema := pgScratchPrefix + hex.EncodeToString(b[:])
	fail := func(err error, what string) (*pgArchive, error) {
		if _, ok := tacerr.As(err); ok {
			return nil, err
		}
		return nil, tacerr.Wrap(tacerr.Unavailable, err, "%s (the reference the backup's schema is compared with, in scratch schema %s)", what, schema)
	}
	if _, err := c.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		return fail(translate(err, "create a scratch schema in the target database (the restore's role needs CREATE on it, as a database owner has)"), "create a scratch schema")
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, derr := c.ExecContext(dctx, "DROP SCHEMA "+schema+" CASCADE"); derr != nil {
			err = errors.Join(err, tacerr.Wrap(tacerr.Unavailable, derr, "drop the restore's scratch schema %s: drop it by hand (DROP SCHEMA %s CASCADE)", schema, schema))
			a = nil
		}
	}()
	sdsn, err := withSearchPath(dsn, schema)
	if err != nil {
		return nil, err
	}
	sc, err := sql.Open("pgx", sdsn)
	if err != nil {
		return fail(err, "connect to the scratch schema")
	}
	defer sc.Close()
	sp, err := migrationsOn(Postgres, sc)
	if err != nil {
		return nil, err
	}
	if _, err := sp.UpTo(ctx, version); err != nil {
		return fail(err, fmt.Sprintf("migrate a reference ledger to %d", version))
	}
	sc.Close()
	dir, err := os.MkdirTemp("", "tacline-reference-")
	if err != nil {
		return fail(err, "make a directory for the reference dump")
	}
	defer os.RemoveAll(dir)
	ref := filepath.Join(dir, "reference.pgdump")
	if err := run(ctx, "pg_dump", "--format=custom", "--no-owner", "--no-privileges", "--schema", schema, "--file", ref, "--dbname", dsn); err != nil {
		return nil, err
	}
	a, err = readPGArchive(ref)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Internal, err, "read the reference dump")
	}
	var es []pgEntry
	for _, e := range a.entries {
		if e.desc == "SCHEMA" && e.tag == schema {
			continue
		}
		for _, s := range []*string{&e.tag, &e.defn, &e.dropStmt, &e.copyStmt, &e.namespace} {
			*s = strings.ReplaceAll(*s, schema, "public")
		}
		es = append(es, e)
	}
	a.entries = es
	return a, nil
}

// withSearchPath returns dsn (a URL or key=value DSN) with search_path set
// to schema: goose then makes its tables there.
func withSearchPath(dsn, schema string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", tacerr.Field(tacerr.InvalidConfig, "database.dsn", "is not a URL: %v", err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	return dsn + " search_path=" + schema, nil
}

// output runs a PostgreSQL client tool and returns its standard output:
// more than limit bytes stops the tool, and is ledger_invariant (the tool
// reads the backup's dump, where a ledger's gives a few).
func output(ctx context.Context, limit int, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := &limitBuffer{limit: limit, over: cancel}
	err := runTo(ctx, out, name, args...)
	if out.Len() > limit {
		return nil, tacerr.New(tacerr.LedgerInvariant, "%s wrote more than %d bytes where a tacline ledger's dump gives a few: the backup set was altered after it was made; restore another set", name, limit)
	}
	return out.Bytes(), err
}

// limitBuffer is a bytes.Buffer that calls over, and keeps no more, once
// it holds more than limit bytes.
type limitBuffer struct {
	bytes.Buffer
	limit int
	over  func()
}

func (b *limitBuffer) Write(p []byte) (int, error) {
	if b.Len() > b.limit {
		return len(p), nil
	}
	b.Buffer.Write(p)
	if b.Len() > b.limit {
		b.over()
	}
	return len(p), nil
}
