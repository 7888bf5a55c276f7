package store

import (
	"database/sql"
	"fmt"
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
}

// rows returns a writer of rows through tx; what names the write in errors.
func (tx *Tx) rows(head, tuple string, cols int, what string) *rowWriter {
	return &rowWriter{tx: tx, head: head, tuple: tuple, cols: cols, what: what}
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
	q, args, n := multiRow(w.head, w.tuple, w.rows), w.args, int64(w.rows)
	w.args, w.rows = w.args[:0], 0
	res, err := w.tx.exec(w.tx.rebind(q), args...)
	if err != nil {
		if w.onDuplicate != nil && isDuplicate(err) {
			return w.onDuplicate(err)
		}
		return translate(err, fmt.Sprintf("%s (%d rows)", w.what, n))
	}
	return checkRows(res, n, w.what)
}

// execRows runs a statement (rebinding it) that must change exactly want
// rows.
func (tx *Tx) execRows(q string, args []any, want int64, what string) error {
	res, err := tx.exec(tx.rebind(q), args...)
	if err != nil {
		return translate(err, what)
	}
	return checkRows(res, want, what)
}

// checkRows checks that a statement changed exactly want rows.
func checkRows(res sql.Result, want int64, what string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return translate(err, what)
	}
	if n != want {
		return tacerr.New(tacerr.Conflict, "%s: %d rows changed, expected %d", what, n, want)
	}
	return nil
}
