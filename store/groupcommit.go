package store

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tacline/tacline/tacerr"
)

// The group committer: concurrent Reserve, Commit and CommitBinding calls
// queue up and are executed in one transaction, each acknowledged only
// after that transaction committed. Its work items are typed: reserveWork
// (allocate.go), commitWork and bindWork (below).

// member is what every work item shares: its outcome and the signal that
// it is known.
type member struct {
	err  error
	done chan struct{}
	// queued is when the member was handed to the committer.
	queued time.Time
}

func newMember() member { return member{done: make(chan struct{})} }

func (m *member) base() *member { return m }

// work is one Reserve, Commit or CommitBinding call in a batch.
type work interface{ base() *member }

// commitWork is a Commit call: an operation on the shared transaction.
type commitWork struct {
	member
	op func(tx *Tx) error
}

// bindWork is a CommitBinding call.
type bindWork struct {
	member
	bind *Binding
}

// committer batches concurrent reservations into one transaction (group
// commit): one fsync acknowledges every reservation of the batch, and a
// pool's high-water mark is read and written once per batch.
type committer struct {
	db       *DB
	mu       sync.Mutex
	queue    []work
	wake     chan struct{}
	stop     chan struct{}
	stopped  chan struct{}
	maxBatch int
	running  bool
	closed   bool // after close, submissions fail at once
	// linger bounds how long a batch waits for the callers of the previous
	// batch to come back (see loop).
	linger time.Duration
	// lastBatch is the size of the previous batch; returning, how many of
	// its callers come back with another member (see gather).
	lastBatch, returning int
	// stats
	batches, reserved atomic.Int64
	// observe, when set, is told of every batch (SetBatchObserver).
	observe atomic.Pointer[func(BatchTiming)]
}

// BatchTiming is what the group committer reports of one batch: how long
// each of its members (Reserve, Commit and CommitBinding calls, in the
// batch's order) waited in the queue before the batch started, and how
// long the batch's transaction took, retries of members alone included,
// until every member's outcome was known.
type BatchTiming struct {
	Queued []time.Duration
	Run    time.Duration
}

// SetBatchObserver installs the observer of the group committer's batches
// (the server's ledger metrics); it is called on the committer's goroutine
// after each batch, before its members are released, and must be quick.
// nil removes it.
func (db *DB) SetBatchObserver(observe func(BatchTiming)) {
	if observe == nil {
		db.committer.observe.Store(nil)
		return
	}
	db.committer.observe.Store(&observe)
}

func (c *committer) submit(w work) {
	w.base().queued = time.Now()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		m := w.base()
		m.err = tacerr.New(tacerr.Unavailable, "the ledger is closed")
		close(m.done)
		return
	}
	c.queue = append(c.queue, w)
	if !c.running {
		c.running = true
		go c.loop()
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *committer) loop() {
	defer close(c.stopped)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		c.gather(timer)
		c.mu.Lock()
		n := len(c.queue)
		if n > c.maxBatch {
			n = c.maxBatch
		}
		batch := c.queue[:n:n]
		c.queue = append([]work(nil), c.queue[n:]...)
		c.mu.Unlock()
		if len(batch) > 0 {
			c.lastBatch = len(batch)
			c.batches.Add(1)
			c.reserved.Add(int64(len(batch)))
			start := time.Now()
			c.db.commitBatch(batch)
			if obs := c.observe.Load(); obs != nil {
				(*obs)(timing(batch, start))
			}
			c.returning = returning(batch)
			for _, w := range batch {
				close(w.base().done)
			}
			continue
		}
		select {
		case <-c.wake:
		case <-c.stop:
			return
		}
	}
}

// gather implements the group-commit delay. Under concurrency, callers whose
// reservations just committed come back within a signature's time with
// their binding; starting the next batch at once would split them from the
// rest and halve every batch (each commit costs one fsync whatever its
// size). So when the previous batch held more than one member, wait until
// the queue holds as many members as the previous batch had callers coming
// back (returning) plus those already waiting, or until linger has passed,
// whichever is first. A lone caller (previous batch of one) never waits,
// nor does a batch after one whose callers all went away (bindings, Commit
// calls: their callers' next request is a new device, not a continuation):
// under an offered rate below the committer's capacity, waiting for them
// held almost every batch for the whole linger.
func (c *committer) gather(timer *time.Timer) {
	if c.lastBatch <= 1 || c.returning == 0 || c.linger <= 0 {
		return
	}
	c.mu.Lock()
	target := len(c.queue) + c.returning
	c.mu.Unlock()
	if target > c.maxBatch {
		target = c.maxBatch
	}
	timer.Reset(c.linger)
	defer timer.Stop()
	for {
		c.mu.Lock()
		n := len(c.queue)
		c.mu.Unlock()
		if n >= target {
			return
		}
		select {
		case <-c.wake:
		case <-timer.C:
			return
		case <-c.stop:
			return
		}
	}
}

// timing is a batch's BatchTiming, the batch having started at start.
func timing(batch []work, start time.Time) BatchTiming {
	t := BatchTiming{Queued: make([]time.Duration, len(batch)), Run: time.Since(start)}
	for i, w := range batch {
		t.Queued[i] = start.Sub(w.base().queued)
	}
	return t
}

// returning counts the members of a committed batch whose callers come
// back with another member: the reservations that succeeded (each caller
// binds its IMEIs once the certificate is signed).
func returning(batch []work) int {
	n := 0
	for _, w := range batch {
		if r, ok := w.(*reserveWork); ok && r.err == nil {
			n++
		}
	}
	return n
}

// close stops the committer after it has committed what was queued.
func (c *committer) close() {
	c.mu.Lock()
	running := c.running
	c.running = false
	c.closed = true
	c.mu.Unlock()
	if running {
		close(c.stop)
		<-c.stopped
	}
}

// BatchStats reports how many group-commit batches ran and how many
// members (Reserve, Commit, CommitBinding calls) they carried (for logs and
// benchmarks).
func (db *DB) BatchStats() (batches, reservations int64) {
	return db.committer.batches.Load(), db.committer.reserved.Load()
}

// Commit runs op in a write transaction shared with other concurrent
// Commit and Reserve calls (group commit) and returns once that transaction
// committed. op must touch nothing but tx: if the shared transaction fails,
// every member is rerun alone in its own transaction, so op may run more
// than once and its error is its own.
func (db *DB) Commit(ctx context.Context, op func(tx *Tx) error) error {
	return db.submitWait(ctx, &commitWork{member: newMember(), op: op})
}

// submitWait hands a Commit or CommitBinding to the committer and waits for
// its transaction.
func (db *DB) submitWait(ctx context.Context, w work) error {
	db.committer.submit(w)
	m := w.base()
	select {
	case <-m.done:
		return m.err
	case <-ctx.Done():
		return tacerr.Wrap(tacerr.Unavailable, ctx.Err(), "ledger write not confirmed before the deadline; retry the request")
	}
}

// commitBatch commits a batch; if the batch as a whole fails, every member
// is rerun alone so that one request's error never fails another's. On
// PostgreSQL a lone binding also takes the batch's path first (bindBatch:
// its writes are queued and sent in one round trip, where BindDevice waits
// for each statement's answer); BindDevice runs only when it failed, to
// name the error.
func (db *DB) commitBatch(batch []work) {
	bulk := len(batch) > 1
	if _, ok := batch[0].(*bindWork); ok && len(batch) == 1 && db.sql.pipeline {
		bulk = true
	}
	if bulk {
		err := db.InTx(context.Background(), func(tx *Tx) error { return tx.runBatch(batch, false) })
		if err == nil {
			return
		}
	}
	for _, w := range batch {
		one := []work{w}
		if err := db.InTx(context.Background(), func(tx *Tx) error { return tx.runBatch(one, true) }); err != nil {
			if r, ok := w.(*reserveWork); ok {
				r.res = nil
			}
			w.base().err = err
		}
	}
}

// runBatch reserves every Reserve member in bulk, runs the Commit members'
// operations, then records the CommitBinding members: in bulk (bindBatch),
// or statement by statement when the member runs alone after its batch
// failed (BindDevice names the error).
func (tx *Tx) runBatch(batch []work, alone bool) error {
	var res []*reserveWork
	var ops []*commitWork
	var binds []*Binding
	tx.genericPlans()
	for _, w := range batch {
		w.base().err = nil
		switch w := w.(type) {
		case *reserveWork:
			w.res = nil
			res = append(res, w)
		case *commitWork:
			ops = append(ops, w)
		case *bindWork:
			binds = append(binds, w.bind)
		default:
			return tacerr.New(tacerr.Internal, "group commit: unknown work item %T", w)
		}
	}
	// A batch's bindings read their pools in its first round trip on
	// PostgreSQL (bindPools), with the reservations' reads.
	var bp *bindPools
	bulkBind := len(binds) > 1 || len(binds) == 1 && !alone && tx.db.sql.pipeline
	if bulkBind {
		bp = newBindPools(binds)
	}
	if len(res) > 0 {
		if err := tx.reserveBatch(res, bp); err != nil {
			return err
		}
	}
	for _, w := range ops {
		if err := w.op(tx); err != nil {
			return err
		}
	}
	switch {
	case len(binds) == 0:
		return nil
	case !bulkBind:
		return tx.BindDevice(binds[0])
	}
	return tx.bindBatch(binds, bp)
}
