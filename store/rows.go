package store

import (
	"database/sql"
	"fmt"
	"math"
	"strings"

	"github.com/tacline/tacline/tacerr"
)

// maxParams bounds the parameters of one statement the store builds (SQLite
// allows 32766 since 3.32, PostgreSQL 65535).
const maxParams = 30000

// multiRow returns head followed by rows copies of tuple, comma-separated,
// with ? placeholders (callers rebind).
func multiRow(head, tuple string, rows int) string {
	var sb strings.Builder
	sb.Grow(len(head) + rows*(len(tuple)+1))
	sb.WriteString(head)
	for i := 0; i < rows; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(tuple)
	}
	return sb.String()
}

// rowWriter is the store's one multi-row writer: it collects rows of one
// INSERT (head "INSERT INTO t (a, b) VALUES ", tuple "(?,?)" with cols
// placeholders) and writes them with as few statements as maxParams allows.
// Every statement must insert every row it carries: a row count that
// differs fails the write (a duplicate key fails it in the database).
type rowWriter struct {
	tx          *Tx
	head, tuple string
	cols        int
	what        string
	args        []any
	rows        int
	// onDuplicate, if set, decides the error of a statement that broke a
	// unique constraint (else it is translated like any other).
	onDuplicate func(err error) error
	// tail, if set, ends each statement (an ON CONFLICT clause whose
	// rows still count: one that updates the conflicting row).
	tail string
}

// rows returns a writer of rows through tx; what names the write in errors.
func (tx *Tx) rows(head, tuple string, cols int, what string) *rowWriter {
	return &rowWriter{tx: tx, head: head, tuple: tuple, cols: cols, what: what}
}

// sized makes room for rows rows (up to one statement's maxParams), for a
// caller that knows how many it will add: the arguments are collected in
// one slice, not in a slice regrown (and copied) at every doubling.
func (w *rowWriter) sized(rows int) *rowWriter {
	if n := min(rows*w.cols, maxParams); n > cap(w.args) {
		w.args = make([]any, 0, n)
	}
	return w
}

// add queues one row of w.cols values, writing the queued rows first when
// one more would exceed maxParams.
func (w *rowWriter) add(vals ...any) error {
	if len(vals) != w.cols {
		return tacerr.New(tacerr.Internal, "%s: a row of %d values, expected %d", w.what, len(vals), w.cols)
	}
	if len(w.args)+w.cols > maxParams {
		if err := w.flush(); err != nil {
			return err
		}
	}
	w.args = append(w.args, vals...)
	w.rows++
	return nil
}

// flush writes the queued rows.
func (w *rowWriter) flush() error {
	if w.rows == 0 {
		return nil
	}
	q, args := w.tx.multiRowInsert(w.head, w.tuple, w.cols, w.rows, w.args)
	q += w.tail
	n := int64(w.rows)
	w.args, w.rows = nil, 0 // a queued write keeps args
	fail := func(err error) error {
		if w.onDuplicate != nil && isDuplicate(err) {
			return w.onDuplicate(err)
		}
		return translate(err, fmt.Sprintf("%s (%d rows)", w.what, n))
	}
	check := func(got int64) error { return rowCount(got, n, w.what) }
	if w.tx.queueWrite(w.tx.rebind(q), args, check, fail, true) {
		return nil
	}
	res, err := w.tx.exec(w.tx.rebind(q), args...)
	if err != nil {
		return fail(err)
	}
	return checkRows(res, n, w.what)
}

// execRows runs a statement (rebinding it) that must change exactly want
// rows.
func (tx *Tx) execRows(q string, args []any, want int64, what string) error {
	return tx.execCheck(q, args, func(n int64) error { return rowCount(n, want, what) }, what)
}

// execCheck runs a statement (rebinding it) whose only result is its row
// count, which check decides; on PostgreSQL it is queued (pipeline.go).
func (tx *Tx) execCheck(q string, args []any, check func(n int64) error, what string) error {
	if tx.queueWrite(tx.rebind(q), args, check, func(err error) error { return translate(err, what) }, false) {
		return nil
	}
	res, err := tx.exec(tx.rebind(q), args...)
	if err != nil {
		return translate(err, what)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return translate(err, what)
	}
	return check(n)
}

// checkRows checks that a statement changed exactly want rows.
func checkRows(res sql.Result, want int64, what string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return translate(err, what)
	}
	return rowCount(n, want, what)
}

// rowCount checks that a statement changed exactly want rows (n).
func rowCount(n, want int64, what string) error {
	if n != want {
		return tacerr.New(tacerr.Conflict, "%s: %d rows changed, expected %d", what, n, want)
	}
	return nil
}

// multiRowInsert is the INSERT of rows rows (head "INSERT INTO t (a, b)
// VALUES ", tuple "(?,?)", cols values per row in args): VALUES lists, or
// on PostgreSQL (dialect arrayParams) the unnest form (unnestRows).
func (tx *Tx) multiRowInsert(head, tuple string, cols, rows int, args []any) (string, []any) {
	if tx.db.sql.arrayParams {
		if q, a, ok := unnestRows(head, tuple, cols, args); ok {
			return q, a
		}
	}
	return multiRow(head, tuple, rows), args
}

// valuesTable is the FROM item "(VALUES tuple, tuple...) AS alias" of rows
// rows (cols values each in args, the tuple's placeholders), its columns
// named column1, column2...; on PostgreSQL (dialect arrayParams) the same
// as "unnest(?::T1[], ...) AS alias(column1, ...)", one array per column,
// so that the statement's text does not depend on the number of rows.
func (tx *Tx) valuesTable(tuple string, cols, rows int, alias string, args []any) (string, []any) {
	if tx.db.sql.arrayParams && len(args) == cols*rows {
		arrays := make([]any, cols)
		fn := make([]string, cols)
		names := make([]string, cols)
		ok := true
		for c := 0; c < cols && ok; c++ {
			var typ string
			arrays[c], typ, ok = column(args, c, cols, rows)
			fn[c], names[c] = "?::"+typ, fmt.Sprintf("column%d", c+1)
		}
		if ok {
			return "unnest(" + strings.Join(fn, ", ") + ") AS " + alias + "(" + strings.Join(names, ", ") + ")", arrays
		}
	}
	return multiRow("(VALUES ", tuple, rows) + ") AS " + alias, args
}

// unnestRows turns a multi-row INSERT (head "INSERT INTO t (a, b, c)
// VALUES ", tuple "(?,'X',?)") into one whose text does not depend on the
// number of rows, each placeholder column sent as one array:
//
//	INSERT INTO t (a, b, c) SELECT u.c1, 'X', u.c2 FROM unnest(?::bigint[], ?::text[]) AS u(c1, c2)
//
// (PostgreSQL). unnest yields the rows in order, so they are inserted in the
// order they were added, as with VALUES. ok is false when a column's Go type
// has no array form here; the caller then keeps the VALUES form.
//
// The statement's text is built once per head, tuple and column types and
// kept (unnestForms): only the arrays are new for each batch.
func unnestRows(head, tuple string, cols int, args []any) (string, []any, bool) {
	if cols <= 0 || len(args)%cols != 0 {
		return "", nil, false
	}
	rows := len(args) / cols
	arrays := make([]any, cols)
	key := unnestKey{head: head, tuple: tuple, cols: cols}
	for c := range cols {
		arr, typ, ok := column(args, c, cols, rows)
		if !ok {
			return "", nil, false
		}
		arrays[c] = arr
		if c < maxUnnestCols {
			key.types[c] = typ
		}
	}
	if cols > maxUnnestCols {
		q, ok := unnestText(head, tuple, cols, func(c int) string { _, t, _ := column(args, c, cols, rows); return t })
		return q, arrays, ok
	}
	if q, ok := unnestForms.get(key); ok {
		return q, arrays, true
	}
	q, ok := unnestText(head, tuple, cols, func(c int) string { return key.types[c] })
	if !ok {
		return "", nil, false
	}
	unnestForms.put(key, q)
	return q, arrays, true
}

// unnestKey names one unnest form: the INSERT's head and tuple and the
// array type of each of its columns (the types are string constants of
// column: comparing them reads no new memory).
type unnestKey struct {
	head, tuple string
	cols        int
	types       [maxUnnestCols]string
}

const (
	maxUnnestCols  = 16  // wider INSERTs build their text every time
	maxUnnestForms = 256 // the store has a few dozen; a bound all the same
)

// unnestForms keeps the unnest forms' texts.
var unnestForms = newMemo[unnestKey, string](maxUnnestForms)

// unnestText is unnestRows' statement for placeholder column c of type
// typeOf(c); ok is false for a head or tuple it does not handle.
func unnestText(head, tuple string, cols int, typeOf func(c int) string) (string, bool) {
	insert, ok := strings.CutSuffix(strings.TrimSpace(head), "VALUES")
	if !ok || !strings.HasPrefix(tuple, "(") || !strings.HasSuffix(tuple, ")") {
		return "", false
	}
	items := strings.Split(tuple[1:len(tuple)-1], ",")
	var sel, fn, names []string
	c := 0
	for _, it := range items {
		it = strings.TrimSpace(it)
		if it != "?" {
			if strings.ContainsAny(it, "?(") { // a cast or an expression: not handled
				return "", false
			}
			sel = append(sel, it) // a literal
			continue
		}
		if c >= cols {
			return "", false
		}
		typ := typeOf(c)
		c++
		name := fmt.Sprintf("c%d", c)
		sel, names = append(sel, "u."+name), append(names, name)
		fn = append(fn, "?::"+typ)
	}
	if c != cols {
		return "", false
	}
	return insert + "SELECT " + strings.Join(sel, ", ") + " FROM unnest(" + strings.Join(fn, ", ") + ") AS u(" + strings.Join(names, ", ") + ")", true
}

// column collects column c of rows rows (cols values each) as a typed
// slice and names its PostgreSQL array type.
func column(args []any, c, cols, rows int) (any, string, bool) {
	switch args[c].(type) {
	case int64, int, int32, uint32, uint64:
		out := make([]int64, rows)
		for r := range out {
			switch v := args[r*cols+c].(type) {
			case int64:
				out[r] = v
			case int:
				out[r] = int64(v)
			case int32:
				out[r] = int64(v)
			case uint32:
				out[r] = int64(v)
			case uint64:
				if v > math.MaxInt64 {
					return nil, "", false
				}
				out[r] = int64(v)
			default:
				return nil, "", false
			}
		}
		return out, "bigint[]", true
	case string:
		out := make([]string, rows)
		for r := range out {
			v, ok := args[r*cols+c].(string)
			if !ok {
				return nil, "", false
			}
			out[r] = v
		}
		return out, "text[]", true
	case []byte:
		out := make([][]byte, rows)
		for r := range out {
			v, ok := args[r*cols+c].([]byte)
			if !ok {
				return nil, "", false
			}
			out[r] = v
		}
		return out, "bytea[]", true
	}
	return nil, "", false
}
