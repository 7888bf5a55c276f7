package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/store"
)

// TestPostgresPointInTimeRecovery runs PostgreSQL's continuous archiving
// (a cluster of its own with archive_mode on), takes a base backup with
// pg_basebackup while the ledger is in use, provisions more devices and
// signs a checkpoint, then recovers two new clusters from the base backup
// and the WAL archive: to the end of the archive (`tacline restore verify`
// proves it, and it holds every device), and to the end of the base backup
// only (`restore verify` refuses it: older than the published checkpoint).
func TestPostgresPointInTimeRecovery(t *testing.T) {
	t.Parallel()
	pgbin := postgresBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	root, err := os.MkdirTemp("", "tacline-pitr-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(root)
	os.Chmod(root, 0o755)
	pg := &cluster{t: t, bin: pgbin, root: root}
	archive := pg.dir("archive")
	primary := pg.initdb("primary", "-c", "wal_level=replica", "-c", "archive_mode=on",
		"-c", "archive_command=cp %p "+archive+"/%f")
	pg.psql(primary, "postgres", "CREATE DATABASE tacline")

	env, err := devenv.Setup(ctx, devenv.Options{Dir: filepath.Join(root, "site"), Stations: 1, Driver: store.Postgres, DSN: primary.dsn("tacline")})
	if err != nil {
		t.Fatal(err)
	}
	cp := tacline(t, time.Minute, "audit", "checkpoint", "--json", "--config", env.ConfigPath)
	if cp.code != 0 {
		t.Fatalf("audit checkpoint: %+v", cp)
	}
	var first struct {
		LogKey string `json:"log_key"`
	}
	if err := json.Unmarshal([]byte(cp.stdout), &first); err != nil || first.LogKey == "" {
		t.Fatalf("audit checkpoint --json: %v %q", err, cp.stdout)
	}
	keyFile := filepath.Join(root, "log.pub")
	os.WriteFile(keyFile, []byte(first.LogKey+"\n"), 0o644)

	proc, err := devenv.StartServer(ctx, taclineBin, env.ConfigPath, filepath.Join(env.Dir, "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer proc.Kill()
	before, err := devenv.ProvisionDevices(ctx, env, proc.URL, 5, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// The base backup, while the server runs.
	base := filepath.Join(root, "base")
	pg.dir("base")
	pg.run("pg_basebackup", "-h", "127.0.0.1", "-p", primary.port, "-U", "postgres", "-D", base, "-X", "stream", "-c", "fast")
	after, err := devenv.ProvisionDevices(ctx, env, proc.URL, 5, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if r := tacline(t, time.Minute, "audit", "checkpoint", "--config", env.ConfigPath); r.code != 0 {
		t.Fatalf("audit checkpoint after the base backup: %+v", r)
	}
	if err := proc.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	// Archive the last WAL segment, then stop the primary.
	pg.waitArchived(primary, pg.psql(primary, "postgres", "SELECT pg_walfile_name(pg_switch_wal())"))
	pg.stop(primary)

	for _, tc := range []struct {
		name   string
		target []string // recovery settings beyond restore_command
		ok     bool
	}{
		{"end of the archive", nil, true},
		{"end of the base backup", []string{"recovery_target = 'immediate'", "recovery_target_action = 'promote'"}, false},
	} {
		c := pg.recover(tc.name, base, archive, tc.target)
		layout := freshLayout(t, env, filepath.Join(root, "layout-"+strings.ReplaceAll(tc.name, " ", "-")), store.SQLite)
		cfg, err := os.ReadFile(layout)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(layout, []byte(strings.Replace(string(cfg), primary.dsn("tacline"), c.dsn("tacline"), 1)), 0o644)
		r := tacline(t, time.Minute, "restore", "verify", "--config", layout, "--log-key", "@"+keyFile)
		if tc.ok {
			if r.code != 0 || !strings.Contains(r.stdout, "ledger check ok") {
				t.Fatalf("%s: restore verify: %+v", tc.name, r)
			}
			// Every device of the primary is in the recovered ledger.
			db, err := store.Open(ctx, store.Config{Driver: store.Postgres, DSN: c.dsn("tacline")})
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range append(before, after...) {
				recs, err := db.DeviceIMEIs(ctx, d.Serial)
				if err != nil || len(recs) != len(d.IMEIs) {
					t.Fatalf("%s: device %s has %d IMEIs in the recovered ledger (%v), want %d", tc.name, d.Serial, len(recs), err, len(d.IMEIs))
				}
			}
			db.Close()
		} else if r.code == 0 || !strings.Contains(r.stderr, "older than a checkpoint") {
			t.Fatalf("%s: restore verify: %+v", tc.name, r)
		}
		t.Logf("%s: restore verify exit %d: %s", tc.name, r.code, strings.TrimSpace(r.stdout+r.stderr))
		pg.stop(c)
	}
	if len(before) == 0 || len(after) == 0 {
		t.Fatalf("devices before/after the base backup: %d/%d", len(before), len(after))
	}
}

// postgresBin is the newest /usr/lib/postgresql/*/bin (Debian's server
// package, which make test's scripts/ensure-postgres.sh installs).
func postgresBin(t *testing.T) string {
	t.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Strings(dirs)
	if len(dirs) == 0 {
		t.Fatal("no PostgreSQL server binaries in /usr/lib/postgresql: install Debian's postgresql package")
	}
	return dirs[len(dirs)-1]
}

// cluster runs throwaway PostgreSQL clusters under root, as the postgres
// user when the test runs as root (initdb refuses root).
type cluster struct {
	t    *testing.T
	bin  string
	root string
}

type pgInstance struct {
	data, port string
	root       string
}

func (i *pgInstance) dsn(db string) string {
	return "postgres://postgres@127.0.0.1:" + i.port + "/" + db + "?sslmode=disable"
}

func (c *cluster) cmd(name string, args ...string) *exec.Cmd {
	path := filepath.Join(c.bin, name)
	if _, err := os.Stat(path); err != nil {
		path = name
	}
	if os.Geteuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	}
	return exec.Command(path, args...)
}

func (c *cluster) run(name string, args ...string) string {
	c.t.Helper()
	out, err := c.cmd(name, args...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func (c *cluster) dir(name string) string {
	c.t.Helper()
	d := filepath.Join(c.root, name)
	if err := os.MkdirAll(d, 0o700); err != nil {
		c.t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chown", "postgres", d).CombinedOutput(); err != nil {
			c.t.Fatalf("chown postgres %s: %v %s", d, err, out)
		}
	}
	return d
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
}

// initdb makes and starts a cluster with the given server settings.
func (c *cluster) initdb(name string, settings ...string) *pgInstance {
	c.t.Helper()
	i := &pgInstance{data: filepath.Join(c.dir(name), "data"), root: c.root}
	c.run("initdb", "-D", i.data, "-A", "trust", "-U", "postgres")
	c.start(i, settings...)
	return i
}

func (c *cluster) start(i *pgInstance, settings ...string) {
	c.t.Helper()
	i.port = freePort(c.t)
	c.t.Cleanup(func() { c.stop(i) })
	opts := append([]string{"-p", i.port, "-k", c.dir("sock"), "-c", "listen_addresses=127.0.0.1"}, settings...)
	c.run("pg_ctl", "-D", i.data, "-l", i.data+".log", "-w", "-t", "60", "-o", strings.Join(quoteAll(opts), " "), "start")
}

func quoteAll(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " %") {
			a = "'" + a + "'"
		}
		out[i] = a
	}
	return out
}

func (c *cluster) stop(i *pgInstance) {
	c.cmd("pg_ctl", "-D", i.data, "-m", "fast", "-w", "stop").Run()
}

func (c *cluster) psql(i *pgInstance, db, sql string) string {
	c.t.Helper()
	return c.run("psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", i.port, "-U", "postgres", "-d", db, "-c", sql)
}

// waitArchived waits until the archiver has archived segment seg.
func (c *cluster) waitArchived(i *pgInstance, seg string) {
	c.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		last := c.psql(i, "postgres", "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
		if last >= seg {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("WAL segment %s not archived (last archived %q)", seg, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// recover makes a cluster from the base backup and the WAL archive, with
// the given recovery target settings, and waits until it accepts writes
// (recovery done and promoted).
func (c *cluster) recover(name, base, archive string, target []string) *pgInstance {
	c.t.Helper()
	i := &pgInstance{data: filepath.Join(c.dir("recovered-"+strings.ReplaceAll(name, " ", "-")), "data"), root: c.root}
	if out, err := exec.Command("cp", "-a", base, i.data).CombinedOutput(); err != nil {
		c.t.Fatalf("copy base backup: %v %s", err, out)
	}
	conf := "restore_command = 'cp " + archive + "/%f %p'\n" + strings.Join(target, "\n") + "\n"
	f, err := os.OpenFile(filepath.Join(i.data, "postgresql.auto.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		c.t.Fatal(err)
	}
	f.WriteString(conf)
	f.Close()
	if err := os.WriteFile(filepath.Join(i.data, "recovery.signal"), nil, 0o600); err != nil {
		c.t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		exec.Command("chown", "-R", "postgres", i.data).Run()
	}
	c.start(i, "-c", "archive_mode=off")
	deadline := time.Now().Add(time.Minute)
	for c.psql(i, "postgres", "SELECT pg_is_in_recovery()") != "f" {
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: still recovering after a minute", name)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return i
}
