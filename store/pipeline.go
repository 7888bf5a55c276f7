package store

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/jmoiron/sqlx"

	"github.com/tacline/tacline/tacerr"
)

// On PostgreSQL a write transaction does not wait for the answer to each of
// its writes whose only result is a row count (the multi-row writer's
// inserts, execRows): they are queued and sent together, as one pgx batch
// in one round trip, before the transaction's next statement that returns
// rows, or before its commit (dialect pipeline). Each queued write keeps
// its own checks (row count, duplicate handling, translation): the first
// that fails is the transaction's error, exactly as if it had been sent
// alone, and the statements after it do not run (the transaction is
// aborted). Nothing changes but the number of round trips: the statements,
// their order, the transaction and its durable commit are the same.
type pipeline struct {
	ctx    context.Context
	conn   *sqlx.Conn // the transaction's connection
	queued []pipedWrite
	err    error // the first failure: every later statement returns it
}

type pipedWrite struct {
	query string
	args  []any
	check func(n int64) error   // the row count
	fail  func(err error) error // the statement's error, translated
}

// queueWrite queues a write on a pipelined transaction; false: tx is not
// pipelined and the caller runs it now.
func (tx *Tx) queueWrite(query string, args []any, check func(n int64) error, fail func(err error) error) bool {
	if tx.pipe == nil {
		return false
	}
	tx.pipe.queued = append(tx.pipe.queued, pipedWrite{query: query, args: args, check: check, fail: fail})
	return true
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
	queued := p.queued
	p.queued = nil
	p.err = p.conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return tacerr.New(tacerr.Internal, "pipelined ledger transaction on a %T connection", dc)
		}
		b := &pgx.Batch{}
		for _, w := range queued {
			b.Queue(w.query, w.args...).Fn = func(br pgx.BatchResults) error {
				ct, err := br.Exec()
				if err != nil {
					return w.fail(err)
				}
				return w.check(ct.RowsAffected())
			}
		}
		return c.Conn().SendBatch(p.ctx, b).Close()
	})
	return p.err
}

// errRow is a row whose query did not run: Scan returns err.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }
