package store

import (
	"context"
	"database/sql"
	"fmt"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/jmoiron/sqlx"

	"github.com/tacline/tacline/tacerr"
)

// On PostgreSQL a write transaction does not wait for the answer to each of
// its writes whose only result is a row count (the multi-row writer's
// inserts, execRows): they are queued and sent together, as one pgx batch
// in one round trip, with the transaction's next statement that returns
// rows read through queryx or queryRowx (that statement is the batch's
// last), or before any other statement, or before its commit (dialect
// pipeline). Each queued write keeps
// its own checks (row count, duplicate handling, translation): the first
// that fails is the transaction's error, exactly as if it had been sent
// alone, and the statements after it do not run (the transaction is
// aborted). Nothing changes but the number of round trips: the statements,
// their order, the transaction and its durable commit are the same.
type pipeline struct {
	ctx    context.Context
	conn   *sqlx.Conn // the transaction's connection
	queued []pipedWrite
	err    error       // the first failure: every later statement returns it
	trips  *wireCounts // the ledger's counts of round trips and statements
}

// wireCounts count what PostgreSQL write transactions sent: round trips
// (each pgx batch, each statement not queued) and statements (every
// statement of every round trip, BEGIN and COMMIT included). trace, when
// set (tests), is told of each statement with its round trip's number.
type wireCounts struct {
	trips, statements atomic.Int64
	trace             atomic.Pointer[func(trip int64, query string)]
}

// trip counts one round trip of one statement, q.
func (c *wireCounts) trip(q string) {
	n := c.trips.Add(1)
	c.statements.Add(1)
	if t := c.trace.Load(); t != nil {
		(*t)(n, q)
	}
}

// batch counts one round trip of queued writes, then sels (a pgx batch).
func (c *wireCounts) batch(queued []pipedWrite, sels []pipedSel) {
	n := c.trips.Add(1)
	c.statements.Add(int64(len(queued) + len(sels)))
	if t := c.trace.Load(); t != nil {
		for _, w := range queued {
			(*t)(n, w.query)
		}
		for _, s := range sels {
			(*t)(n, s.query)
		}
	}
}

type pipedWrite struct {
	query string
	args  []any
	check func(n int64) error   // the row count (nil: not checked)
	fail  func(err error) error // the statement's error, translated
	// exact: the row count can differ from the check's only if the server
	// fails the statement (the multi-row writer's plain INSERTs, which
	// insert every row or none), so COMMIT may follow it in the same batch
	// (commitPiped).
	exact bool
	// commit marks the transaction's COMMIT, which must answer COMMIT
	// (PostgreSQL answers ROLLBACK, without an error, to the COMMIT of a
	// failed transaction).
	commit bool
}

// queueWrite queues a write on a pipelined transaction; false: tx is not
// pipelined and the caller runs it now.
func (tx *Tx) queueWrite(query string, args []any, check func(n int64) error, fail func(err error) error, exact bool) bool {
	if tx.pipe == nil {
		return false
	}
	tx.pipe.queued = append(tx.pipe.queued, pipedWrite{query: query, args: args, check: check, fail: fail, exact: exact})
	return true
}

// sqlGenericPlans makes a group-commit transaction's statements run on
// their generic plans (genericPlans).
const sqlGenericPlans = `SET LOCAL plan_cache_mode = force_generic_plan`

// genericPlans queues, on a pipelined transaction, the setting that makes
// its prepared statements run on the plan each connection made for them
// once, rather than a plan made again for every execution. A batch's
// statements send their rows as arrays (one text whatever the batch's
// size), and PostgreSQL's own choice (plan_cache_mode auto) kept a custom
// plan, made per execution, for five of them: those that probe a table
// per array element (a LATERAL subquery with LIMIT 1: the intents
// completed, the replays, the devices provisioned, the bindings' pools)
// and the reservation ids (generate_series). Costed for the batch's few
// elements, a custom plan always looked cheaper than the generic plan
// costed for 10, though both are the same index probes. That planning was a fixed cost of every batch (docs/benchmarks.md,
// "Session 8 (branch pgfixed)"). SET LOCAL ends with the transaction. On
// SQLite (no pipeline) it does nothing.
func (tx *Tx) genericPlans() {
	tx.queueWrite(sqlGenericPlans, nil, nil, func(err error) error {
		return translate(err, "set the batch's plan cache mode")
	}, true)
}

// commit commits a pipelined transaction. COMMIT goes in the batch of the
// last queued writes when none of them has a check that only the client
// can make (a row count an UPDATE's WHERE decides: the server would commit
// before the client saw it wrong); otherwise those writes are sent and
// checked first, and COMMIT follows alone.
func (p *pipeline) commit() error {
	if p.err != nil {
		return p.err
	}
	for _, w := range p.queued {
		if w.check != nil && !w.exact {
			if err := p.send(nil); err != nil {
				return err
			}
			break
		}
	}
	p.queued = append(p.queued, pipedWrite{query: "COMMIT", commit: true, fail: func(err error) error {
		return translate(err, "commit ledger transaction")
	}})
	return p.send(nil)
}

// sync sends the queued writes in one round trip and returns the first
// failure (also returned by every later call: the transaction is aborted).
func (tx *Tx) sync() error {
	p := tx.pipe
	if p == nil {
		return nil
	}
	if p.err != nil || len(p.queued) == 0 {
		return p.err
	}
	return p.send(nil)
}

// send sends the queued writes, then sels, in one round trip (one pgx
// batch), each query's rows read whole and handed to its scan. A failed
// write, or a batch that could not be sent (translated: a lost connection
// is unavailable, as database/sql's BEGIN reported it), is the
// transaction's error from then on (p.err) and nothing after it runs; a
// query's own error is returned as it is (as the query run alone would
// return it).
func (p *pipeline) send(sels []pipedSel) error {
	queued := p.queued
	p.trips.batch(queued, sels)
	p.queued = nil
	var qerr error
	err := p.conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return tacerr.New(tacerr.Internal, "pipelined ledger transaction on a %T connection", dc)
		}
		b := queueWrites(queued)
		for _, s := range sels {
			b.Queue(s.query, s.args...).Fn = func(br pgx.BatchResults) error {
				rows := &pipedRows{next: -1, types: c.Conn().TypeMap()}
				r, err := br.Query()
				if err == nil {
					err = rows.read(r)
				}
				if err == nil {
					err = s.scan(rows)
				}
				if err != nil {
					qerr = err
				}
				return err
			}
		}
		return c.Conn().SendBatch(p.ctx, b).Close()
	})
	if qerr != nil {
		return qerr
	}
	if err != nil {
		// A batch that could not be sent or read at all (a lost
		// connection) fails before any statement's own translation.
		err = translate(err, "send ledger statements")
		p.err = err
	}
	return err
}

// queueWrites makes a pgx batch of queued writes, each checked as it
// would be alone.
func queueWrites(queued []pipedWrite) *pgx.Batch {
	b := &pgx.Batch{}
	for _, w := range queued {
		b.Queue(w.query, w.args...).Fn = func(br pgx.BatchResults) error {
			ct, err := br.Exec()
			if err != nil {
				return w.fail(err)
			}
			if w.commit && ct.String() != "COMMIT" {
				return w.fail(tacerr.New(tacerr.Unavailable, "the ledger transaction was rolled back (%s)", ct))
			}
			if w.check == nil {
				return nil
			}
			return w.check(ct.RowsAffected())
		}
	}
	return b
}

// rowsIter is what queryx returns: *sqlx.Rows, or the rows of a query that
// followed queued writes in their round trip (pipedRows).
type rowsIter interface {
	Next() bool
	Scan(dest ...any) error
	Close() error
	Err() error
}

// queryAfterWrites sends the queued writes and query in one round trip and
// returns the query's rows, read whole (callers read few rows: those
// their batch wrote or locked). ok is false when there is nothing queued
// (the caller runs query itself). Errors are as send returns them.
func (tx *Tx) queryAfterWrites(query string, args []any) (rows *pipedRows, ok bool, err error) {
	p := tx.pipe
	if p == nil || p.err != nil || len(p.queued) == 0 {
		return nil, false, nil
	}
	err = p.send([]pipedSel{{query: query, args: args, scan: func(r rowsIter) error {
		rows = r.(*pipedRows)
		return nil
	}}})
	if err != nil {
		return nil, true, err
	}
	return rows, true, nil
}

// selAll runs queries that do not depend on each other's answers and
// hands each one's rows to its scan, in order: on a pipelined transaction
// all of them, after the queued writes, in one round trip; otherwise one
// after the other. The first error stops it.
func (tx *Tx) selAll(sels []pipedSel) error {
	if p := tx.pipe; p != nil {
		if p.err != nil {
			return p.err
		}
		return p.send(sels)
	}
	for _, s := range sels {
		rows, err := tx.queryx(s.query, s.args...)
		if err != nil {
			return err
		}
		err = s.scan(rows)
		if cerr := rows.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// pipedRows are a query's rows read whole from a pgx batch, scanned as pgx
// scans them.
type pipedRows struct {
	types  *pgtype.Map
	fields []pgconn.FieldDescription
	vals   [][][]byte
	next   int
}

func (r *pipedRows) read(rows pgx.Rows) error {
	defer rows.Close()
	r.fields = append([]pgconn.FieldDescription(nil), rows.FieldDescriptions()...)
	for rows.Next() {
		raw := rows.RawValues()
		row := make([][]byte, len(raw))
		for i, v := range raw {
			if v != nil {
				row[i] = append(make([]byte, 0, len(v)), v...)
			}
		}
		r.vals = append(r.vals, row)
	}
	return rows.Err()
}

func (r *pipedRows) Next() bool {
	r.next++
	return r.next < len(r.vals)
}

func (r *pipedRows) Scan(dest ...any) error {
	if r.next < 0 || r.next >= len(r.vals) {
		return sql.ErrNoRows
	}
	row := r.vals[r.next]
	if len(dest) != len(row) {
		return tacerr.New(tacerr.Internal, "scan of %d columns into %d values", len(row), len(dest))
	}
	for i, d := range dest {
		if err := r.types.Scan(r.fields[i].DataTypeOID, r.fields[i].Format, row[i], d); err != nil {
			return fmt.Errorf("scan column %s: %w", r.fields[i].Name, err)
		}
	}
	return nil
}

// Columns returns the names of the columns (for sqlx.StructScan).
func (r *pipedRows) Columns() ([]string, error) {
	out := make([]string, len(r.fields))
	for i, f := range r.fields {
		out[i] = f.Name
	}
	return out, nil
}

func (r *pipedRows) Close() error { return nil }
func (r *pipedRows) Err() error   { return nil }

// pipedRow is the first row of pipedRows (queryRowx): sql.ErrNoRows when
// there is none.
type pipedRow struct{ rows *pipedRows }

func (r pipedRow) Scan(dest ...any) error {
	if !r.rows.Next() {
		return sql.ErrNoRows
	}
	return r.rows.Scan(dest...)
}

// rollback ends a transaction that failed. Nothing is sent when its BEGIN
// was not (still queued).
func (p *pipeline) rollback() {
	if len(p.queued) > 0 && p.queued[0].query == "BEGIN" {
		return
	}
	_, _ = p.conn.ExecContext(context.Background(), "ROLLBACK")
}

// connTx runs a pipelined transaction's statements that are not queued on
// its connection (the transaction was begun by a queued BEGIN).
type connTx struct {
	ctx   context.Context
	c     *sqlx.Conn
	trips *wireCounts // as pipeline.trips
}

func (t connTx) Rebind(q string) string { return t.c.Rebind(q) }
func (t connTx) Exec(q string, args ...any) (sql.Result, error) {
	t.trips.trip(q)
	return t.c.ExecContext(t.ctx, q, args...)
}
func (t connTx) Get(dest any, q string, args ...any) error {
	t.trips.trip(q)
	return t.c.GetContext(t.ctx, dest, q, args...)
}
func (t connTx) Select(dest any, q string, args ...any) error {
	t.trips.trip(q)
	return t.c.SelectContext(t.ctx, dest, q, args...)
}
func (t connTx) Queryx(q string, args ...any) (*sqlx.Rows, error) {
	t.trips.trip(q)
	return t.c.QueryxContext(t.ctx, q, args...)
}
func (t connTx) QueryRowx(q string, args ...any) *sqlx.Row {
	t.trips.trip(q)
	return t.c.QueryRowxContext(t.ctx, q, args...)
}

// txRunner is what a Tx runs its statements on: a *sqlx.Tx, or connTx.
type txRunner interface {
	Rebind(q string) string
	Exec(q string, args ...any) (sql.Result, error)
	Get(dest any, q string, args ...any) error
	Select(dest any, q string, args ...any) error
	Queryx(q string, args ...any) (*sqlx.Rows, error)
	QueryRowx(q string, args ...any) *sqlx.Row
}

// errRow is a row whose query did not run: Scan returns err.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }
