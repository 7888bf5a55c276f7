package pgadmin

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/tacline/tacline/internal/proccpu"
)

// creator is the process that made a database: the machine (host name and
// boot), its process id and its start time (proccpu.Start), so that a
// later process reusing the id is not taken for it.
type creator struct {
	host, boot string
	pid        int
	start      uint64
}

const (
	creatorPrefix = "tacline scratch database of "
	// keptComment marks a database kept on purpose (Keep).
	keptComment = "tacline database kept on purpose; drop it when done"
)

// String is the database comment that records c.
func (c creator) String() string {
	return fmt.Sprintf("%shost=%s boot=%s pid=%d start=%d", creatorPrefix, c.host, c.boot, c.pid, c.start)
}

// parseCreator reads a comment String wrote; false for any other comment.
func parseCreator(comment string) (creator, bool) {
	rest, ok := strings.CutPrefix(comment, creatorPrefix)
	if !ok {
		return creator{}, false
	}
	var c creator
	var err error
	for _, f := range strings.Fields(rest) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "host":
			c.host = v
		case "boot":
			c.boot = v
		case "pid":
			c.pid, err = strconv.Atoi(v)
		case "start":
			c.start, err = strconv.ParseUint(v, 10, 64)
		}
		if err != nil {
			return creator{}, false
		}
	}
	return c, c.host != "" && c.boot != "" && c.pid > 0 && c.start > 0
}

// self is this process as a creator; false where /proc does not tell
// (not Linux): then databases carry no comment and are never swept.
func self() (creator, bool) {
	host, err := os.Hostname()
	if err != nil {
		return creator{}, false
	}
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return creator{}, false
	}
	pid := os.Getpid()
	start, err := proccpu.Start(pid)
	if err != nil {
		return creator{}, false
	}
	return creator{host: strings.ReplaceAll(host, " ", "_"), boot: strings.TrimSpace(string(boot)), pid: pid, start: start}, true
}

// gone reports whether c is a process of this machine's current boot
// that no longer runs. A creator of another boot is never gone: it may be
// this machine before a reboot, or another machine of the same name
// sharing the server (guests of one image often are), whose processes this
// one cannot see.
func (c creator) gone(me creator) bool {
	if c.host != me.host || c.boot != me.boot {
		return false
	}
	start, err := proccpu.Start(c.pid)
	return err != nil || start != c.start
}

// sweep drops the databases this package made on this machine whose
// creator is gone and that nobody is connected to. A failure to read or
// drop one is not an error: the next sweep tries again.
func sweep(ctx context.Context, adb *sql.DB) {
	me, ok := self()
	if !ok {
		return
	}
	rows, err := adb.QueryContext(ctx, `SELECT d.datname, coalesce(shobj_description(d.oid, 'pg_database'), ''),
		(SELECT count(*) FROM pg_stat_activity a WHERE a.datname = d.datname)
		FROM pg_database d WHERE starts_with(d.datname, $1)`, Prefix)
	if err != nil {
		return
	}
	var orphans []string
	for rows.Next() {
		var name, comment string
		var conns int
		if rows.Scan(&name, &comment, &conns) != nil {
			continue
		}
		if c, ok := parseCreator(comment); ok && conns == 0 && c.gone(me) && !strings.ContainsAny(name, "\" ;'") {
			orphans = append(orphans, name)
		}
	}
	rows.Close()
	for _, name := range orphans {
		// Without FORCE: a process that connects meanwhile keeps it.
		adb.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name)
	}
}
