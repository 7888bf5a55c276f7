package store

import (
	"bytes"
	"encoding/binary"
	"os"
	"time"
)

// RunBatch runs reservations and bindings as one group-commit batch, as the
// committer does when they arrive together (tests: the batch's composition
// does not depend on timing). It returns each member's result in order.
func (db *DB) RunBatch(reqs []ReserveRequest, binds []*Binding) ([]*Reservation, []error) {
	var batch []work
	for _, r := range reqs {
		p := &reserveWork{member: newMember(), req: r}
		if err := p.req.validate(); err != nil {
			p.err = err
			close(p.done)
			continue
		}
		batch = append(batch, p)
	}
	for _, b := range binds {
		batch = append(batch, &bindWork{member: newMember(), bind: b})
	}
	db.commitBatch(batch)
	var res []*Reservation
	var errs []error
	for _, w := range batch {
		var r *Reservation
		if p, ok := w.(*reserveWork); ok {
			r = p.res
		}
		res = append(res, r)
		errs = append(errs, w.base().err)
	}
	return res, errs
}

// CoalesceStats exposes the write-coalescing VFS's counters (tests).
func CoalesceStats() (writes, flushes, bytes int64) { return coalesceStats() }

// CoalesceVFS is the name of the write-coalescing VFS (tests).
const CoalesceVFS = coalesceVFS

// ExecRows runs tx.execRows (queued on PostgreSQL): a write whose row count
// only the client checks.
func (tx *Tx) ExecRows(q string, args []any, want int64) error {
	return tx.execRows(q, args, want, "test update")
}

// PGBatchStatements are the PostgreSQL group-commit statements that find
// rows by key, each with arguments of its types (tests of their plans).
var PGBatchStatements = map[string][]any{
	sqlReplaysPG:            {[]string{"r"}},
	sqlProvisionedDevicesPG: {[]string{"d"}},
	sqlBindPoolsPG:          {[]int64{1}},
	sqlCompleteIntentsPG:    {int64(1), []string{"r"}},
	sqlBindIMEIsPG:          {int64(1), []int64{1}, []string{"d"}, []string{"c"}},
}

// RoundTrips is how many statements and pgx batches PostgreSQL write
// transactions sent so far.
func (db *DB) RoundTrips() int64 { return db.wire.trips.Load() }

// Statements is how many statements PostgreSQL write transactions sent so
// far (BEGIN and COMMIT included), in all their round trips.
func (db *DB) Statements() int64 { return db.wire.statements.Load() }

// TraceStatements makes every statement a PostgreSQL write transaction
// sends from now on known to trace, with the number of its round trip
// (nil: no more).
func (db *DB) TraceStatements(trace func(trip int64, query string)) {
	if trace == nil {
		db.wire.trace.Store(nil)
		return
	}
	db.wire.trace.Store(&trace)
}

// CustomPlansAfterReserve runs reqs as one group-commit batch with a
// Commit member, run after the reservations, that reads how many custom
// plans (plans made for one execution) PostgreSQL made so far for the
// prepared statements of the batch's connection that take an array
// (unnest: the group commit's statements).
func (db *DB) CustomPlansAfterReserve(reqs []ReserveRequest) (int64, error) {
	var n int64
	var batch []work
	for _, r := range reqs {
		if err := r.validate(); err != nil {
			return 0, err
		}
		batch = append(batch, &reserveWork{member: newMember(), req: r})
	}
	batch = append(batch, &commitWork{member: newMember(), op: func(tx *Tx) error {
		return tx.queryRowx(`SELECT COALESCE(SUM(custom_plans), 0) FROM pg_prepared_statements WHERE statement LIKE '%unnest(%'`).Scan(&n)
	}})
	db.commitBatch(batch)
	for _, w := range batch {
		if err := w.base().err; err != nil {
			return 0, err
		}
	}
	return n, nil
}

// SetLinger sets how long the committer may hold a batch for the previous
// batch's callers (tests).
func (db *DB) SetLinger(d time.Duration) {
	db.committer.mu.Lock()
	db.committer.linger = d
	db.committer.mu.Unlock()
}

// QueuedMembers is the number of members waiting for the committer (tests).
func (db *DB) QueuedMembers() int {
	db.committer.mu.Lock()
	defer db.committer.mu.Unlock()
	return len(db.committer.queue)
}

// SetRebuildHooks replaces, until the returned function is called, how
// often a copy (a rebuild's or a backup's) reports progress, how it reads
// a directory's free space, and what a rebuild does at each step
// ("copied", "checked", "renamed") (tests).
func SetRebuildHooks(tick time.Duration, free func(dir string) (int64, error), step func(string)) (restore func()) {
	t, f, s := progressTick, freeSpace, rebuildStep
	if tick > 0 {
		progressTick = tick
	}
	if free != nil {
		freeSpace = free
	}
	if step != nil {
		rebuildStep = step
	}
	return func() { progressTick, freeSpace, rebuildStep = t, f, s }
}

// RebuildEstimate is rebuildEstimate (tests).
func RebuildEstimate(used, from, to int64) int64 { return rebuildEstimate(used, from, to) }

// WarmTables lists the tables of the indexes Warm reads, in order.
func WarmTables() []string {
	var ts []string
	for _, k := range warmKeys {
		ts = append(ts, k.table)
	}
	return ts
}

// EditDump rewrites the TOC of the pg_dump custom-format archive in file:
// edit may change each entry's definition and COPY statement (given its
// type and name); the data blocks are kept, their offsets moved by what
// the TOC grew or shrank. Tests doctor backups with it the way someone
// with a hex editor would.
func EditDump(file string, edit func(desc, tag string, defn, copyStmt *string)) error {
	a, err := readPGArchive(file)
	if err != nil {
		return err
	}
	old, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	for i := range a.entries {
		e := &a.entries[i]
		edit(e.desc, e.tag, &e.defn, &e.copyStmt)
	}
	var toc bytes.Buffer
	w := pgWriter{b: &toc, intSize: a.intSize}
	encode := func(shift int64) {
		toc.Reset()
		w.int(int64(len(a.entries)))
		for _, e := range a.entries {
			i := 0
			str := func(s string) {
				w.str(s, e.nulls&(1<<i) != 0)
				i++
			}
			w.int(e.dumpID)
			w.int(map[bool]int64{false: 0, true: 1}[e.hadDumper])
			str(e.tableOID)
			str(e.oid)
			str(e.tag)
			str(e.desc)
			w.int(e.section)
			str(e.defn)
			str(e.dropStmt)
			str(e.copyStmt)
			str(e.namespace)
			str(e.tablespace)
			if a.version >= pgArchV1_14 {
				str(e.tableAM)
			}
			if a.version >= pgArchV1_16 {
				w.int(e.relkind)
			}
			str(e.owner)
			str(e.withOids)
			for _, d := range e.deps {
				w.str(d, false)
			}
			w.str("", true)
			toc.WriteByte(e.dataState)
			off := e.dataOffset
			if e.dataState == pgOffsetSet {
				off += shift
			}
			var b [8]byte
			binary.LittleEndian.PutUint64(b[:], uint64(off))
			toc.Write(b[:a.offSize])
		}
	}
	encode(0)
	encode(a.headerEnd + int64(toc.Len()) - a.tocEnd)
	out := append(append(append([]byte(nil), old[:a.headerEnd]...), toc.Bytes()...), old[a.tocEnd:]...)
	return os.WriteFile(file, out, 0o600)
}

// pgWriter writes integers and strings as pg_dump's WriteInt and WriteStr.
type pgWriter struct {
	b       *bytes.Buffer
	intSize int
}

func (w pgWriter) int(v int64) {
	sign := byte(0)
	if v < 0 {
		sign, v = 1, -v
	}
	w.b.WriteByte(sign)
	for range w.intSize {
		w.b.WriteByte(byte(v))
		v >>= 8
	}
}

func (w pgWriter) str(s string, null bool) {
	if null {
		w.int(-1)
		return
	}
	w.int(int64(len(s)))
	w.b.WriteString(s)
}
