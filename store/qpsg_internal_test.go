package store

import (
	"context"
	"database/sql/driver"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/jmoiron/sqlx"
	"github.com/mattn/go-sqlite3"
)

// TestStatementsNotRecompiledPerExecution: a prepared statement runs
// again and again without SQLite compiling it anew, on the readers and on
// the writer, also for the joins whose plans SQLite would otherwise tie
// to their bound values (the driver clears the bindings before every
// execution, which recompiled them each time: qpsg.go). Without the
// planner setting each statement below is recompiled at every execution.
func TestStatementsNotRecompiledPerExecution(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, Config{Driver: SQLite, DSN: filepath.Join(t.TempDir(), "ledger.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	stmts := []string{
		sqlStationRequestCheck, // every provisioning request's admission read
		sqlPoolOfIMEI,          // every binding's event
		`SELECT s.line FROM (SELECT 1 AS one) x LEFT JOIN stations s ON s.id = ? ORDER BY s.id LIMIT ?`,
	}
	for _, side := range []struct {
		name string
		pool *sqlx.DB
	}{{"reader", db.r}, {"writer", db.w}} {
		c, err := side.pool.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		err = c.Raw(func(dc any) error {
			sc, ok := dc.(*sqlite3.SQLiteConn)
			if !ok {
				return fmt.Errorf("the driver connection is a %T", dc)
			}
			for _, q := range stmts {
				st, err := sc.Prepare(q)
				if err != nil {
					return fmt.Errorf("prepare %q: %w", q, err)
				}
				for i := 0; i < 5; i++ {
					args := make([]driver.NamedValue, strings.Count(q, "?"))
					for j := range args {
						args[j] = driver.NamedValue{Ordinal: j + 1, Value: fmt.Sprintf("v%d-%d", j, i)}
					}
					args[len(args)-1].Value = int64(i + 2)
					rows, err := st.(driver.StmtQueryContext).QueryContext(ctx, args)
					if err != nil {
						return fmt.Errorf("run %q: %w", q, err)
					}
					dest := make([]driver.Value, len(rows.Columns()))
					for rows.Next(dest) != io.EOF {
					}
					rows.Close()
				}
				n := stmtReprepares(sqliteStmtHandle(t, st))
				st.Close()
				if n != 0 {
					t.Errorf("%s: SQLite compiled %q again %d times in 5 executions, want 0", side.name, firstLine(q), n)
				}
			}
			return nil
		})
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// sqliteStmtHandle is the sqlite3_stmt* of a statement of the driver (the
// driver keeps it in an unexported field; a renamed field fails here).
func sqliteStmtHandle(t *testing.T, st driver.Stmt) unsafe.Pointer {
	t.Helper()
	v := reflect.ValueOf(st)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		t.Fatalf("the driver's statement is a %T", st)
	}
	f := v.Elem().FieldByName("s")
	if !f.IsValid() || f.Kind() != reflect.Pointer {
		t.Fatalf("the driver's statement %T has no sqlite3_stmt field s", st)
	}
	return *(*unsafe.Pointer)(unsafe.Pointer(f.UnsafeAddr()))
}

func firstLine(q string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(q), "\n")
	return l
}
