package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// dirNames lists the names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestBackupRefusedBeforeWriting: a SQLite backup measures the pages in
// use before it copies, and refuses with insufficient_space naming the
// directory, what it needs and what is free when the filesystem has less,
// writing nothing; the ledger goes on serving. With one byte less than
// the need it is refused, with exactly the need it copies.
func TestBackupRefusedBeforeWriting(t *testing.T) {
	ctx := context.Background()
	cfg := rebuildLedger(t)
	db, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The need: the pages in use at the page size, plus 2 % (at least
	// 64 MiB).
	var pageSize int64
	needOf := func() int64 {
		var pages, freePages int64
		for q, v := range map[string]*int64{"page_count": &pages, "freelist_count": &freePages, "page_size": &pageSize} {
			if err := storetest.Reader(db).Get(v, "PRAGMA "+q); err != nil {
				t.Fatal(err)
			}
		}
		used := (pages - freePages) * pageSize
		if used < 8<<20 {
			t.Fatalf("the ledger has %d bytes in use, want the padding's 8 MiB", used)
		}
		return used + max(used/50, 64<<20)
	}
	need := needOf()
	dir := t.TempDir()
	free := int64(1 << 20)
	defer store.SetRebuildHooks(0, func(d string) (int64, error) {
		if d != dir {
			t.Errorf("free space asked of %s, not the backup's directory %s", d, dir)
		}
		return free, nil
	}, nil)()
	_, err = db.Backup(ctx, dir, cfg.DSN, func(p store.CopyProgress) { t.Errorf("a refused backup reported progress %+v", p) })
	e := wantCode(t, err, tacerr.InsufficientSpace)
	for _, want := range []string{dir, fmt.Sprintf("(%d bytes) free in", need), fmt.Sprintf("(%d bytes) free.", free), "--to", "nothing was written"} {
		if !strings.Contains(e.Message, want) {
			t.Errorf("message %q does not say %q", e.Message, want)
		}
	}
	if names := dirNames(t, dir); len(names) > 0 {
		t.Fatalf("a refused backup wrote %v", names)
	}
	if _, err := reserve(db, "after-refusal", "A", 2); err != nil {
		t.Fatalf("the ledger after a refused backup: %v", err)
	}
	free = needOf() - 1
	if _, err := db.Backup(ctx, dir, cfg.DSN, nil); !tacerr.Is(err, tacerr.InsufficientSpace) || len(dirNames(t, dir)) > 0 {
		t.Fatalf("with one byte less than the need: %v, wrote %v", err, dirNames(t, dir))
	}
	free++
	var last store.CopyProgress
	name, err := db.Backup(ctx, dir, cfg.DSN, func(p store.CopyProgress) { last = p })
	if err != nil || name != "ledger.db" {
		t.Fatalf("backup with the space it asked for: %q, %v", name, err)
	}
	st, err := os.Stat(filepath.Join(dir, name))
	if err != nil || last.Bytes != st.Size() || last.TotalBytes != st.Size() || last.PageSize != pageSize {
		t.Fatalf("the copy's last progress %+v; the file %v, %v", last, st, err)
	}
}

// TestBackupDiskFull: a SQLite backup whose filesystem fills up during
// the copy (a real tmpfs of 2 MiB, smaller than the 8 MiB copy, whose
// free space the backup was told is ample: something else took it after
// the measure) fails with insufficient_space, removes its partial copy
// and leaves the ledger as it was. The copy runs in TestBackupDiskFullChild.
func TestBackupDiskFull(t *testing.T) {
	cfg := rebuildLedger(t)
	want := ledgerState(t, cfg)
	storetest.SmallFS(t, "TestBackupDiskFullChild", 2<<20, "TACLINE_BACKUP_LEDGER="+cfg.DSN)
	if got := ledgerState(t, cfg); got != want {
		t.Fatalf("after a backup that filled its disk: %s; before: %s", got, want)
	}
	db, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := reserve(db, "after-full", "A", 2); err != nil {
		t.Fatalf("the ledger after a backup that filled its disk: %v", err)
	}
}

// TestBackupDiskFullChild is TestBackupDiskFull's child: the backup into
// the small filesystem.
func TestBackupDiskFullChild(t *testing.T) {
	dir := storetest.SmallFSDir(t)
	ctx := context.Background()
	cfg := store.Config{Driver: store.SQLite, DSN: os.Getenv("TACLINE_BACKUP_LEDGER")}
	defer store.SetRebuildHooks(time.Millisecond, func(string) (int64, error) { return 1 << 40, nil }, nil)()
	db, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var grew int64
	_, err = db.Backup(ctx, dir, cfg.DSN, func(p store.CopyProgress) { grew = max(grew, p.Bytes) })
	e := wantCode(t, err, tacerr.InsufficientSpace)
	if !strings.Contains(e.Message, "filled up during the backup's copy") || !strings.Contains(err.Error(), "database or disk is full") {
		t.Fatalf("backup into a full filesystem: %v", err)
	}
	if grew == 0 {
		t.Fatal("the copy reported no bytes written before the disk filled")
	}
	if names := dirNames(t, dir); len(names) > 0 {
		t.Fatalf("a backup that filled its disk left %v", names)
	}
}

// TestBackupPostgresDiskFull: pg_dump failing for lack of space ("No space
// left on device", a real 16 KiB tmpfs) is insufficient_space, and the
// partial dump is removed. The dump runs in TestBackupPostgresDiskFullChild.
func TestBackupPostgresDiskFull(t *testing.T) {
	cfg := storetest.Config(t, store.Postgres)
	db, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	seed(t, db, 0, 999)
	db.Close()
	storetest.SmallFS(t, "TestBackupPostgresDiskFullChild", 16<<10, "TACLINE_BACKUP_LEDGER="+cfg.DSN)
}

// TestBackupPostgresDiskFullChild is TestBackupPostgresDiskFull's child.
func TestBackupPostgresDiskFullChild(t *testing.T) {
	dir := storetest.SmallFSDir(t)
	ctx := context.Background()
	cfg := store.Config{Driver: store.Postgres, DSN: os.Getenv("TACLINE_BACKUP_LEDGER")}
	db, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = db.Backup(ctx, dir, cfg.DSN, nil)
	e := wantCode(t, err, tacerr.InsufficientSpace)
	for _, want := range []string{dir, "No space left on device", "partial dump was removed"} {
		if !strings.Contains(e.Message, want) {
			t.Errorf("message %q does not say %q", e.Message, want)
		}
	}
	if names := dirNames(t, dir); len(names) > 0 {
		t.Fatalf("a dump that filled its disk left %v", names)
	}
}

// TestRestoreDiskFull: a SQLite restore into a filesystem too small for
// the backup's ledger copy is insufficient_space naming the directory,
// and leaves nothing there: refused before it writes when the measure
// says so, and when the disk fills during the copy anyway (the free
// space it was told was ample), with the partial copy removed. It was
// unavailable ("copy ...: no space left on device"), which tells an
// operator nothing to do. The restores run in TestRestoreDiskFullChild.
func TestRestoreDiskFull(t *testing.T) {
	cfg := rebuildLedger(t)
	db, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	set := t.TempDir()
	name, err := db.Backup(context.Background(), set, cfg.DSN, nil)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	storetest.SmallFS(t, "TestRestoreDiskFullChild", 16<<10, "TACLINE_RESTORE_FILE="+filepath.Join(set, name))
}

// TestRestoreDiskFullChild is TestRestoreDiskFull's child.
func TestRestoreDiskFullChild(t *testing.T) {
	dir := storetest.SmallFSDir(t)
	file := os.Getenv("TACLINE_RESTORE_FILE")
	for _, tc := range []struct {
		name string
		free func(string) (int64, error) // nil: the filesystem's
		want string
	}{
		{"measured", nil, "nothing was written"},
		{"filled during the copy", func(string) (int64, error) { return 1 << 40, nil }, "filled up during the restore's copy"},
	} {
		restore := store.SetRebuildHooks(0, tc.free, nil)
		err := store.Restore(context.Background(), store.Config{Driver: store.SQLite, DSN: filepath.Join(dir, "ledger.db")}, file)
		restore()
		e := wantCode(t, err, tacerr.InsufficientSpace)
		if !strings.Contains(e.Message, dir) || !strings.Contains(e.Message, tc.want) {
			t.Errorf("%s: restore into a full filesystem: %v; want it to name %s and say %q", tc.name, err, dir, tc.want)
		}
		if names := dirNames(t, dir); len(names) > 0 {
			t.Fatalf("%s: a restore into a full filesystem left %v", tc.name, names)
		}
	}
}

// pgBackup makes a PostgreSQL ledger with a pool and 20 reservations,
// migrated down to version when it is not 0 (an older tacline's), backs
// it up with Backup and returns the dump's path.
func pgBackup(t *testing.T, version int64) string {
	t.Helper()
	ctx := context.Background()
	cfg := storetest.Config(t, store.Postgres)
	db, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	seed(t, db, 0, 999)
	for i := range 20 {
		if _, err := reserve(db, fmt.Sprint("r", i), "A", 2); err != nil {
			t.Fatal(err)
		}
	}
	if version != 0 {
		if err := db.MigrateDownTo(ctx, version); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	name, err := db.Backup(ctx, dir, cfg.DSN, nil)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, name)
}

// pgCopy copies the dump at file into a new file of t's.
func pgCopy(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), filepath.Base(file))
	if err := os.WriteFile(out, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

// pgDoctor alters the dump at file as someone who can write the backup
// set would: it loads the dump into a scratch database with pg_restore,
// runs stmts there and dumps it again with pg_dump, over file.
func pgDoctor(t *testing.T, file string, stmts ...string) {
	t.Helper()
	dsn := storetest.PostgresDSN(t)
	if out, err := exec.Command("pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--dbname", dsn, file).CombinedOutput(); err != nil {
		t.Fatalf("pg_restore of the dump to doctor: %v: %s", err, out)
	}
	execOn(t, "pgx", dsn, stmts...)
	if out, err := exec.Command("pg_dump", "--format=custom", "--no-owner", "--no-privileges", "--file", file, "--dbname", dsn).CombinedOutput(); err != nil {
		t.Fatalf("pg_dump of the doctored database: %v: %s", err, out)
	}
}

// pgRestoreInto restores the dump at file into a new database and returns
// its configuration, what it then holds besides PostgreSQL's own
// (relations, functions, event triggers, schemas) and the restore's error.
func pgRestoreInto(t *testing.T, file string) (store.Config, string, error) {
	t.Helper()
	cfg := store.Config{Driver: store.Postgres, DSN: storetest.PostgresDSN(t)}
	err := store.Restore(context.Background(), cfg, file)
	c, oerr := sql.Open("pgx", cfg.DSN)
	if oerr != nil {
		t.Fatal(oerr)
	}
	defer c.Close()
	var rels, funcs, events int
	var schemas string
	for q, v := range map[string]any{
		`SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')`: &rels,
		`SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')`:              &funcs,
		`SELECT count(*) FROM pg_event_trigger`: &events,
		`SELECT COALESCE(string_agg(nspname, ',' ORDER BY nspname), '') FROM pg_namespace WHERE nspname NOT LIKE 'pg\_%' AND nspname NOT IN ('information_schema', 'public')`: &schemas,
	} {
		if err := c.QueryRow(q).Scan(v); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return cfg, fmt.Sprintf("%d relations, %d functions, %d event triggers, schemas [%s]", rels, funcs, events, schemas), err
}

// TestRestorePostgres: a dump made by Backup of a PostgreSQL ledger, of
// this tacline's schema or of an older one (migrated down to 20, as an
// older tacline left it), is restored: its schema is the one tacline's
// migrations give at its version, compared before pg_restore runs with a
// reference migrated in a scratch schema of the target database, which is
// gone afterwards. The restored ledger opens (the older one is migrated
// up) and passes ledger check.
func TestRestorePostgres(t *testing.T) {
	for _, version := range []int64{0, 20} {
		t.Run(fmt.Sprint("migration ", version), func(t *testing.T) {
			cfg, _, err := pgRestoreInto(t, pgBackup(t, version))
			if err != nil {
				t.Fatalf("restore: %v", err)
			}
			c, err := sql.Open("pgx", cfg.DSN)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var scratch int
			if err := c.QueryRow(`SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tacline\_ref\_%'`).Scan(&scratch); err != nil || scratch != 0 {
				t.Fatalf("%d scratch schemas left after the restore (%v)", scratch, err)
			}
			checkRestored40(t, cfg)
		})
	}
}

// TestRestorePostgresReadsTheDumpOnce: the dump is judged and loaded from
// one private copy, so a set changed between the check and pg_restore
// cannot load what was not judged. The dump comes through a named pipe,
// which gives its bytes once: the restore must succeed from that single
// read (before the copy, pg_restore opened the pipe again after the check
// had read it and waited for a writer until the deadline).
func TestRestorePostgresReadsTheDumpOnce(t *testing.T) {
	dump, err := os.ReadFile(pgBackup(t, 0))
	if err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(t.TempDir(), "ledger.pgdump")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	wrote := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err == nil {
			_, err = f.Write(dump)
			err = errors.Join(err, f.Close())
		}
		wrote <- err
	}()
	cfg := store.Config{Driver: store.Postgres, DSN: storetest.PostgresDSN(t)}
	if err := store.Restore(ctx, cfg, fifo); err != nil {
		t.Fatalf("restore from a dump given once: %v", err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	checkRestored40(t, cfg)
}

// checkRestored40 opens the ledger restored into cfg from pgBackup's set
// and checks it: no violation, its 40 IMEIs.
func checkRestored40(t *testing.T, cfg store.Config) {
	t.Helper()
	db, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if rep := mustCheck(t, db); rep.IMEIs != 40 {
		t.Fatalf("the restored ledger has %d IMEIs, want 40", rep.IMEIs)
	}
}

// TestRestorePostgresRefusesAlteredDump: the manifest's hashes prove only
// that the files are those the manifest names, and anyone who can write
// the set can recompute them; pg_restore runs whatever SQL the dump holds,
// as database.dsn's role. Each dump below, altered as such a person would
// (loaded into a database, changed there and dumped again, or its TOC
// edited in place), was restored as it was, and ledger check and the
// audit proof passed, the data being fine. Each is now refused before
// pg_restore runs anything of it, naming the first difference, and the
// target database is left as it was: nothing in it.
func TestRestorePostgresRefusesAlteredDump(t *testing.T) {
	good := pgBackup(t, 0)
	for _, c := range []struct {
		name  string
		stmts []string                                   // run on a database the dump was loaded into
		edit  func(desc, tag string, defn, copy *string) // or: the dump's TOC edited
		want  string
	}{
		{name: "trigger added", stmts: []string{`CREATE TRIGGER evil AFTER UPDATE ON imeis FOR EACH ROW EXECUTE FUNCTION audit_append_only()`},
			want: `TRIGGER public "imeis evil" is not in tacline's schema: CREATE TRIGGER evil AFTER UPDATE ON public.imeis`},
		{name: "function and trigger added", stmts: []string{
			`CREATE FUNCTION unbind() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.state := 'RESERVED'; RETURN NEW; END$$`,
			`CREATE TRIGGER unbind BEFORE UPDATE ON imeis FOR EACH ROW EXECUTE FUNCTION unbind()`},
			want: `(2 difference(s); the first: FUNCTION public "unbind()" is not in tacline's schema`},
		{name: "guard dropped", stmts: []string{`DROP TRIGGER imeis_never_deleted ON imeis`},
			want: `TRIGGER public "imeis imeis_never_deleted" of tacline's schema is missing`},
		{name: "function body changed", stmts: []string{`CREATE OR REPLACE FUNCTION imeis_guard() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$`},
			want: `FUNCTION public "imeis_guard()" differs from tacline's: its definition, line`},
		{name: "view added", stmts: []string{`CREATE VIEW bound AS SELECT imei14 FROM imeis`},
			want: `VIEW public "bound" is not in tacline's schema`},
		{name: "event trigger added", stmts: []string{
			`CREATE FUNCTION on_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$BEGIN RAISE NOTICE 'ddl'; END$$`,
			`CREATE EVENT TRIGGER on_ddl ON ddl_command_end EXECUTE FUNCTION on_ddl()`},
			want: `the next: EVENT TRIGGER - "on_ddl" is not in tacline's schema: CREATE EVENT TRIGGER on_ddl ON ddl_command_end`},
		{name: "schema added", stmts: []string{`CREATE SCHEMA evil`},
			want: `SCHEMA - "evil" is not in tacline's schema`},
		{name: "COPY into another table", edit: func(desc, tag string, _, copy *string) {
			if desc == "TABLE DATA" && tag == "lease_asks" {
				*copy = "COPY public.goose_db_version (id, version_id, is_applied, tstamp) FROM stdin;\n"
			}
		}, want: `TABLE DATA public "lease_asks" differs from tacline's: its COPY statement is "COPY public.goose_db_version`},
		{name: "SQL in the search path", edit: func(desc, _ string, defn, _ *string) {
			if desc == "SEARCHPATH" {
				*defn += "CREATE TABLE public.evil (x int);\n"
			}
		}, want: `SEARCHPATH - "SEARCHPATH" differs from tacline's: its definition, line 2 is "CREATE TABLE public.evil (x int);"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			file := pgCopy(t, good)
			if c.edit != nil {
				if err := store.EditDump(file, c.edit); err != nil {
					t.Fatal(err)
				}
			} else {
				pgDoctor(t, file, c.stmts...)
			}
			_, left, err := pgRestoreInto(t, file)
			if !tacerr.Is(err, tacerr.LedgerInvariant) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("restore of a dump with %s = %v; want ledger_invariant saying %s", c.name, err, c.want)
			}
			if want := "0 relations, 0 functions, 0 event triggers, schemas []"; left != want {
				t.Fatalf("a refused restore left %s; want %s", left, want)
			}
		})
	}
}

// TestRestorePostgresDatabaseLevelEntries: what an operator sets on the
// ledger's database itself (a comment, a per-database setting, a grant)
// is in its dump as entries pg_restore runs only with --create, which a
// restore never gives; they differ between databases and are no part of
// tacline's schema. A backup of such a database was refused as altered
// (the schema check compared them); it now restores, and the target keeps
// its own settings.
func TestRestorePostgresDatabaseLevelEntries(t *testing.T) {
	ctx := context.Background()
	cfg := storetest.Config(t, store.Postgres)
	db, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	seed(t, db, 0, 99)
	u, err := url.Parse(cfg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	execOn(t, "pgx", storetest.AdminDSN(),
		`COMMENT ON DATABASE `+name+` IS 'production ledger, line 3'`,
		`ALTER DATABASE `+name+` SET statement_timeout = '60s'`,
		`GRANT CONNECT ON DATABASE `+name+` TO PUBLIC`)
	dir := t.TempDir()
	file, err := db.Backup(ctx, dir, cfg.DSN, nil)
	if err != nil {
		t.Fatal(err)
	}
	target, _, err := pgRestoreInto(t, filepath.Join(dir, file))
	if err != nil {
		t.Fatalf("restore of a ledger whose database has a comment, a setting and a grant: %v", err)
	}
	c, err := sql.Open("pgx", target.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var timeout string
	if err := c.QueryRow(`SHOW statement_timeout`).Scan(&timeout); err != nil || timeout == "1min" {
		t.Fatalf("the restored database took the source's setting (statement_timeout %q, %v): pg_restore ran a database-level entry", timeout, err)
	}
}

// TestRestorePostgresNewerDump: a dump whose migration history goes past
// this tacline's migrations cannot be compared: invalid_state, nothing
// restored.
func TestRestorePostgresNewerDump(t *testing.T) {
	file := pgBackup(t, 0)
	pgDoctor(t, file, `INSERT INTO goose_db_version (version_id, is_applied) VALUES (9999, true)`)
	_, left, err := pgRestoreInto(t, file)
	if !tacerr.Is(err, tacerr.InvalidState) || !strings.Contains(err.Error(), "at migration 9999, newer than this tacline's") {
		t.Fatalf("restore of a dump at migration 9999 = %v; want invalid_state", err)
	}
	if want := "0 relations, 0 functions, 0 event triggers, schemas []"; left != want {
		t.Fatalf("a refused restore left %s; want %s", left, want)
	}
}

// TestRestorePostgresRefusesScratchLeft: a restore killed while it
// compared the dump leaves its scratch schema in the target database; a
// restore there would carry it into the restored ledger. It is refused
// (conflict naming the schema) before anything is written.
func TestRestorePostgresRefusesScratchLeft(t *testing.T) {
	cfg := store.Config{Driver: store.Postgres, DSN: storetest.PostgresDSN(t)}
	c, err := sql.Open("pgx", cfg.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Exec(`CREATE SCHEMA tacline_ref_0123456789ab`); err != nil {
		t.Fatal(err)
	}
	err = store.Restore(context.Background(), cfg, filepath.Join(t.TempDir(), "never-read.pgdump"))
	if !tacerr.Is(err, tacerr.Conflict) || !strings.Contains(err.Error(), "tacline_ref_0123456789ab") {
		t.Fatalf("restore beside a scratch schema = %v; want conflict naming it", err)
	}
}

// TestRestorePostgresAsDatabaseOwner: the restore's role is commonly the
// owner of the target database, neither superuser nor CREATEDB. The
// comparison's reference is migrated in a scratch schema of that database,
// which such a role may create and drop: the dump is restored, and no
// scratch schema is left.
func TestRestorePostgresAsDatabaseOwner(t *testing.T) {
	file := pgBackup(t, 0)
	admin, err := sql.Open("pgx", storetest.AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	role := fmt.Sprintf("tacline_tmp_role_%d", time.Now().UnixNano())
	if _, err := admin.Exec(`CREATE ROLE ` + role + ` LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec(`DROP ROLE ` + role); err != nil {
			t.Errorf("drop role %s: %v", role, err)
		}
	})
	dsn := storetest.PostgresDSN(t) // dropped before the role (cleanups run last first)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(`ALTER DATABASE ` + strings.TrimPrefix(u.Path, "/") + ` OWNER TO ` + role); err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	cfg := store.Config{Driver: store.Postgres, DSN: u.String()}
	if err := store.Restore(context.Background(), cfg, file); err != nil {
		t.Fatalf("restore as the database's owner %s: %v", role, err)
	}
	db, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var scratch int
	if err := storetest.Reader(db).Get(&scratch, `SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'tacline\_ref\_%'`); err != nil || scratch != 0 {
		t.Fatalf("%d scratch schemas left after the restore (%v)", scratch, err)
	}
	if rep := mustCheck(t, db); rep.IMEIs != 40 {
		t.Fatalf("the restored ledger has %d IMEIs, want 40", rep.IMEIs)
	}
}
