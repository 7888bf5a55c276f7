package pgadmin

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/tacline/tacline/internal/proccpu"
)

// adminDSN is the tests' administrative DSN (storetest.AdminDSN, which
// imports this package).
func adminDSN() string {
	if v := os.Getenv("TACLINE_TEST_PG_DSN"); v != "" {
		return v
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// TestSweepDropsOrphans: CreateDatabase drops the databases an earlier
// process of this machine made and left behind when it died (its process
// is gone, nobody is connected), and none other: not one whose creator
// still runs, one that someone is connected to, one kept on purpose, one
// made on another machine or in another boot (it may be another machine of
// the same name), or by an older version (no creator comment).
// The database it creates names this process as its creator.
func TestSweepDropsOrphans(t *testing.T) {
	ctx := context.Background()
	me, ok := self()
	if !ok {
		t.Fatal("this process's creator (host, boot id, start time) cannot be read from /proc")
	}
	// A creator that has exited: a child, its start time read while it ran.
	child := exec.Command("sleep", "60")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	start, err := proccpu.Start(child.Process.Pid)
	if err != nil {
		t.Fatalf("the child's start time: %v", err)
	}
	child.Process.Kill()
	child.Wait()
	dead := creator{host: me.host, boot: me.boot, pid: child.Process.Pid, start: start}
	if !dead.gone(me) || me.gone(me) {
		t.Fatalf("gone: exited child %v, this process %v", dead.gone(me), me.gone(me))
	}

	adb, err := sql.Open("pgx", adminDSN())
	if err != nil {
		t.Fatal(err)
	}
	// Closed by the first cleanup registered, so after the drops below
	// (cleanups run last first; a deferred Close ran before them, and the
	// drops failed unseen, leaving the databases behind).
	t.Cleanup(func() { adb.Close() })
	var b [4]byte
	rand.Read(b[:])
	tag := hex.EncodeToString(b[:])
	names := map[string]string{}
	comments := map[string]string{
		"dead":       dead.String(),
		"connected":  dead.String(),
		"alive":      me.String(),
		"kept":       keptComment,
		"elsewhere":  creator{host: me.host + "-other", boot: "x", pid: 1, start: 1}.String(),
		"other boot": creator{host: me.host, boot: me.boot + "-other", pid: dead.pid, start: dead.start}.String(),
		"no comment": "",
	}
	// Every database is made without a comment (no sweep takes one) and
	// "connected" gets its connection before any gets its creator: other
	// test processes sweep while this one runs.
	for what := range comments {
		name := Prefix + "sweep_" + tag + "_" + strings.ReplaceAll(what, " ", "_")
		names[what] = name
		if _, err := adb.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if _, err := adb.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
				t.Errorf("drop %s: %v", name, err)
			}
		})
	}
	u := adminDSN()
	conn, err := sql.Open("pgx", replaceDB(t, u, names["connected"]))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	for what, comment := range comments {
		if comment != "" {
			if _, err := adb.ExecContext(ctx, "COMMENT ON DATABASE "+names[what]+" IS '"+comment+"'"); err != nil {
				t.Fatal(err)
			}
		}
	}

	dsn, drop, err := CreateDatabase(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer drop()
	var left []string
	for what, name := range names {
		var n int
		if err := adb.QueryRowContext(ctx, `SELECT count(*) FROM pg_database WHERE datname = $1`, name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			left = append(left, what)
		}
	}
	slices.Sort(left)
	if want := []string{"alive", "connected", "elsewhere", "kept", "no comment", "other boot"}; !slices.Equal(left, want) {
		t.Fatalf("after CreateDatabase these remain: %q, want %q (only the dead creator's, unconnected, dropped)", left, want)
	}
	name, err := ownName(dsn)
	if err != nil {
		t.Fatal(err)
	}
	var comment string
	if err := adb.QueryRowContext(ctx, `SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1`, name).Scan(&comment); err != nil {
		t.Fatal(err)
	}
	if c, ok := parseCreator(comment); !ok || c != me {
		t.Fatalf("the new database's comment %q, want this process (%s)", comment, me)
	}
	if err := Keep(ctx, u, dsn); err != nil {
		t.Fatal(err)
	}
	if err := adb.QueryRowContext(ctx, `SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1`, name).Scan(&comment); err != nil || comment != keptComment {
		t.Fatalf("after Keep the comment is %q (%v), want it kept", comment, err)
	}
}

// replaceDB is dsn with its database name replaced.
func replaceDB(t *testing.T, dsn, name string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}
