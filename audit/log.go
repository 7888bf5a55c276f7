package audit

import (
	"crypto"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// Config is the `audit:` section of tacline's configuration.
type Config struct {
	// Origin names the log: the first line of its checkpoints and the name
	// of its signing key (e.g. "acme.example/tacline-audit").
	Origin string `yaml:"origin" doc:"the log name: first line of checkpoints and the signing key name, e.g. acme.example/tacline-audit"`
	// CheckpointEvery signs a checkpoint after this many new events
	// (0: DefaultCheckpointEvery).
	CheckpointEvery int `yaml:"checkpoint_every" doc:"sign a checkpoint after this many new events (0: 10000)" default:"10000"`
	// CheckpointInterval signs a checkpoint this long after the last one
	// if events were appended since (0: DefaultCheckpointInterval).
	CheckpointInterval time.Duration `yaml:"checkpoint_interval" doc:"sign a checkpoint this long after the last one if events were appended (0: 1m)" default:"1m0s"`
	// KeyLabel is the label of the ECDSA P-256 checkpoint key in the HSM.
	KeyLabel string `yaml:"key_label" doc:"label of the ECDSA P-256 checkpoint key in the HSM"`
	// PublishedCheckpoint is the file, outside the ledger database, where
	// every newly signed checkpoint is recorded (see published.go).
	PublishedCheckpoint string `yaml:"published_checkpoint" doc:"file outside the database holding the newest signed checkpoint (put it next to the HSM token); a ledger older than it is refused at start-up (empty: no rollback detection)"`
	// Disabled leaves the log out of the ledger's transactions (for
	// measuring its cost; never in production).
	Disabled bool `yaml:"disabled" doc:"leave the audit log out (benchmarks only; never in production)"`
}

// Defaults for Config.
const (
	DefaultCheckpointEvery    = 10000
	DefaultCheckpointInterval = time.Minute
)

// Validate reports the first wrong field, named as in the configuration file.
func (c Config) Validate() error {
	if c.Origin == "" {
		return tacerr.Field(tacerr.InvalidConfig, "audit.origin", "is required: the log's name, e.g. acme.example/tacline-audit")
	}
	if !validKeyName(c.Origin) {
		return tacerr.Field(tacerr.InvalidConfig, "audit.origin", "%q must be printable text without spaces or '+', e.g. acme.example/tacline-audit", c.Origin)
	}
	if c.CheckpointEvery < 0 {
		return tacerr.Field(tacerr.InvalidConfig, "audit.checkpoint_every", "must not be negative (0 means %d)", DefaultCheckpointEvery)
	}
	if c.CheckpointInterval < 0 {
		return tacerr.Field(tacerr.InvalidConfig, "audit.checkpoint_interval", "must not be negative (0 means %s)", DefaultCheckpointInterval)
	}
	if strings.TrimSpace(c.KeyLabel) == "" {
		return tacerr.Field(tacerr.InvalidConfig, "audit.key_label", "is required: the label of the ECDSA P-256 checkpoint key in the HSM")
	}
	return nil
}

func (c Config) every() int64 {
	if c.CheckpointEvery == 0 {
		return DefaultCheckpointEvery
	}
	return int64(c.CheckpointEvery)
}

func (c Config) interval() time.Duration {
	if c.CheckpointInterval == 0 {
		return DefaultCheckpointInterval
	}
	return c.CheckpointInterval
}

// Log is the audit log of one ledger database. It is a store.Sink: attach
// it with Attach (or db.AddSink) and every ledger change appends its events.
// A Log is safe for concurrent use; several Logs (replicas) may append to
// one PostgreSQL database.
type Log struct {
	db     *store.DB
	cfg    Config
	signer *NoteSigner // nil: the log cannot sign checkpoints

	mu   sync.Mutex
	edge edgeCache

	kick chan struct{}

	// appends by path: one guarded statement, or after locking the head
	guessed, locked atomic.Int64
}

// AppendStats counts appends by how they found the head: guessed (one
// guarded statement on PostgreSQL) or locked (read under the lock).
func (l *Log) AppendStats() (guessed, locked int64) {
	return l.guessed.Load(), l.locked.Load()
}

var _ store.Sink = (*Log)(nil)

// New returns the audit log of db. key signs checkpoints (the HSM's
// crypto.Signer for cfg.KeyLabel); it may be nil for a log that only
// appends.
func New(db *store.DB, cfg Config, key crypto.Signer) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &Log{db: db, cfg: cfg, kick: make(chan struct{}, 1)}
	if key != nil {
		s, err := NewNoteSigner(cfg.Origin, key)
		if err != nil {
			return nil, err
		}
		l.signer = s
	}
	return l, nil
}

// Attach registers l as a sink of its ledger unless the configuration
// disables the log. Call it at start-up, before the ledger is used.
func (l *Log) Attach() {
	if !l.cfg.Disabled {
		l.db.AddSink(l)
	}
}

// Verifier returns the verifier of the log's checkpoint key, or nil if the
// log has no key.
func (l *Log) Verifier() *NoteVerifier {
	if l.signer == nil {
		return nil
	}
	return l.signer.Verifier()
}

// edgeCache remembers the right-edge stored hashes (the roots of the
// complete subtrees) of the tree of a given size and root. It is only used
// when the head row shows the same size and root, which (SHA-256 being
// collision resistant) proves that the cached hashes are the committed ones,
// whichever replica committed them, and that a rolled-back append left none
// of its hashes behind.
type edgeCache struct {
	size   int64
	root   tlog.Hash
	hashes map[int64]tlog.Hash
}

// edgeIndexes returns the stored hash indexes of the complete subtrees that
// make up the tree of size n, left to right (ascending), which are all that
// appending to it or hashing it reads.
func edgeIndexes(n int64) []int64 {
	var idx []int64
	for l := 62; l >= 0; l-- {
		if (n>>uint(l))&1 == 1 {
			idx = append(idx, tlog.StoredHashIndex(l, (n>>uint(l))-1))
		}
	}
	return idx
}

// SQL of the append path.
const (
	qHeadForUpdate = `SELECT size, root FROM audit_head WHERE id = 1 FOR UPDATE`
	qHead          = `SELECT size, root FROM audit_head WHERE id = 1`
	qUpdateHead    = `UPDATE audit_head SET size = ?, root = ? WHERE id = 1 AND size = ?`
	qInsertLeaves  = `INSERT INTO audit_leaves (idx, data) VALUES `
	qInsertHashes  = `INSERT INTO audit_hashes (idx, hash) VALUES `
	qInsertIMEIs   = `INSERT INTO audit_imeis (imei, idx) VALUES `
	qReadHashes    = `SELECT idx, hash FROM audit_hashes WHERE idx IN (?)`
)

// rowsPerInsert bounds one multi-row INSERT (2 parameters a row, well
// below SQLite's and PostgreSQL's parameter limits).
const rowsPerInsert = 500

// Append appends events to the log inside tx (store.Sink). Leaf indexes are
// assigned under the head row's lock: SELECT ... FOR UPDATE on PostgreSQL,
// the single-writer transaction on SQLite. On PostgreSQL, when this replica
// knows the head it committed last, it first tries one guarded statement
// that takes the same lock by updating the head only if it is still that
// head, and writes the rows only then; another replica having appended
// meanwhile makes it write nothing, and the locked path follows.
func (l *Log) Append(tx *store.Tx, events []store.Event) error {
	if len(events) == 0 {
		return nil
	}
	if tx.Dialect() == store.Postgres {
		if g, ok := l.guess(); ok {
			done, err := l.appendAt(tx, events, g.size, g.root, g.hashes, true)
			if done {
				l.guessed.Add(1)
			}
			if err != nil || done {
				return err
			}
		}
	}
	size, root, err := lockHead(tx)
	if err != nil {
		return err
	}
	_, err = l.appendAt(tx, events, size, root, l.cachedEdge(size, root), false)
	if err == nil {
		l.locked.Add(1)
	}
	return err
}

// errNeedDB stops a guessed append that would have to read stored hashes.
var errNeedDB = errors.New("stored hash not cached")

// appendAt appends events to the tree (size, root), whose edge hashes are
// (at least partly) in known. With guessed set, the head is not locked yet:
// it writes only if the head still is (size, root) and reports false,
// having written nothing, otherwise.
func (l *Log) appendAt(tx *store.Tx, events []store.Event, size int64, root tlog.Hash, known map[int64]tlog.Hash, guessed bool) (bool, error) {
	r := &txHashReader{tx: tx, known: known, cacheOnly: guessed}
	var leaves, hashes, imeis []any
	for i, e := range events {
		n := size + int64(i)
		data, err := EncodeEvent(e)
		if err != nil {
			return false, err
		}
		hs, err := tlog.StoredHashesForRecordHash(n, tlog.RecordHash(data), r)
		if errors.Is(err, errNeedDB) {
			return false, nil
		}
		if err != nil {
			return false, store.Translate(err, "compute audit stored hashes")
		}
		base := tlog.StoredHashIndex(0, n)
		for j, h := range hs {
			r.known[base+int64(j)] = h
			hashes = append(hashes, base+int64(j), h[:])
		}
		leaves = append(leaves, n, data)
		for _, m := range e.IMEIs {
			imeis = append(imeis, normIMEI(m), n)
		}
	}
	newSize := size + int64(len(events))
	newRoot, err := tlog.TreeHash(newSize, r)
	if errors.Is(err, errNeedDB) {
		return false, nil
	}
	if err != nil {
		return false, store.Translate(err, "compute audit root")
	}
	rows := [3][]any{leaves, hashes, imeis}
	if guessed {
		if ok, err := writeGuarded(tx, rows, newSize, newRoot, size, root); err != nil || !ok {
			return false, err
		}
	} else if err := writeAppend(tx, rows, newSize, newRoot, size); err != nil {
		return false, err
	}
	l.remember(newSize, newRoot, r.known)
	if size/l.cfg.every() != newSize/l.cfg.every() {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
	return true, nil
}

// lockHead reads the head row and, on PostgreSQL, locks it until tx ends
// (on SQLite the write transaction already excludes other writers).
func lockHead(tx *store.Tx) (int64, tlog.Hash, error) {
	q := qHead
	if tx.Dialect() == store.Postgres {
		q = qHeadForUpdate
	}
	var size int64
	var rootb []byte
	if err := tx.QueryRowx(q).Scan(&size, &rootb); err != nil {
		return 0, tlog.Hash{}, store.Translate(err, "lock the audit log head")
	}
	root, err := hashOf(rootb, "audit_head.root")
	return size, root, err
}

// normIMEI stores IMEIs in their 15-digit form when they parse, as given
// otherwise (the leaf keeps what the ledger said either way).
func normIMEI(s string) string {
	if m, err := imei.Parse(s); err == nil {
		return m.String()
	}
	return s
}

// guess returns the edge cache: the tree this replica appended to last.
func (l *Log) guess() (edgeCache, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.edge.hashes == nil {
		return edgeCache{}, false
	}
	m := make(map[int64]tlog.Hash, len(l.edge.hashes)+8)
	for k, v := range l.edge.hashes {
		m[k] = v
	}
	return edgeCache{size: l.edge.size, root: l.edge.root, hashes: m}, true
}

// cachedEdge returns a fresh map holding the cached edge hashes if they
// belong to the tree (size, root), else an empty map.
func (l *Log) cachedEdge(size int64, root tlog.Hash) map[int64]tlog.Hash {
	m := make(map[int64]tlog.Hash, 64)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.edge.hashes != nil && l.edge.size == size && l.edge.root == root {
		for k, v := range l.edge.hashes {
			m[k] = v
		}
	}
	return m
}

// remember caches the edge of the tree (size, root) from known.
func (l *Log) remember(size int64, root tlog.Hash, known map[int64]tlog.Hash) {
	idx := edgeIndexes(size)
	m := make(map[int64]tlog.Hash, len(idx))
	for _, i := range idx {
		h, ok := known[i]
		if !ok {
			return
		}
		m[i] = h
	}
	l.mu.Lock()
	l.edge = edgeCache{size: size, root: root, hashes: m}
	l.mu.Unlock()
}

// maxOneShotParams bounds the parameters of the single PostgreSQL
// statement that writes a whole append (below its limit of 65535).
const maxOneShotParams = 30000

var insertPrefixes = [3]string{qInsertLeaves, qInsertHashes, qInsertIMEIs}

// writeAppend inserts the rows of an append (leaves, hashes, imeis: 2
// values a row) and advances the head from size to newSize, checking that
// the head row was updated. On PostgreSQL, when the rows fit, it is one
// round trip: the inserts are data-modifying CTEs of the head's UPDATE. On
// SQLite (in-process, statements cached by store) it runs one statement per
// table and the UPDATE.
func writeAppend(tx *store.Tx, sets [3][]any, newSize int64, newRoot tlog.Hash, size int64) error {
	head := []any{newSize, newRoot[:], size}
	total := len(head)
	for _, a := range sets {
		total += len(a)
	}
	var b strings.Builder
	args := make([]any, 0, total)
	if tx.Dialect() != store.Postgres || total > maxOneShotParams {
		for i, a := range sets {
			if err := insertRows(tx, insertPrefixes[i], a); err != nil {
				return err
			}
		}
	} else {
		n := 0
		for i, a := range sets {
			if len(a) == 0 {
				continue
			}
			if n == 0 {
				fmt.Fprintf(&b, "WITH w%d AS (", i)
			} else {
				fmt.Fprintf(&b, ", w%d AS (", i)
			}
			writeValues(&b, insertPrefixes[i], len(a)/2)
			b.WriteString(") ")
			args = append(args, a...)
			n++
		}
	}
	b.WriteString(qUpdateHead)
	args = append(args, head...)
	res, err := tx.Exec(tx.Rebind(b.String()), args...)
	if err != nil {
		return store.Translate(err, "append to the audit log")
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return tacerr.New(tacerr.LedgerInvariant, "audit log head moved from size %d during the append (rows affected %d, %v)", size, n, err)
	}
	return nil
}

// The guarded append (PostgreSQL): the head's UPDATE matches only the
// expected head, and each insert takes its rows only if it did.
const (
	qGuardHead   = `WITH h AS (UPDATE audit_head SET size = ?, root = ? WHERE id = 1 AND size = ? AND root = ? RETURNING 1)`
	qGuardSelect = ` SELECT count(*) FROM h`
)

var (
	guardTables = [3]string{"audit_leaves (idx, data)", "audit_hashes (idx, hash)", "audit_imeis (imei, idx)"}
	guardTuples = [3]string{"(?::bigint,?::bytea)", "(?::bigint,?::bytea)", "(?::text,?::bigint)"}
)

// writeGuarded writes an append in one statement if the head still is
// (size, root), reporting whether it did; false with nil error means
// nothing was written (another replica moved the head, or the rows do not
// fit one statement).
func writeGuarded(tx *store.Tx, sets [3][]any, newSize int64, newRoot tlog.Hash, size int64, root tlog.Hash) (bool, error) {
	args := []any{newSize, newRoot[:], size, root[:]}
	total := len(args)
	for _, a := range sets {
		total += len(a)
	}
	if total > maxOneShotParams {
		return false, nil
	}
	var b strings.Builder
	b.WriteString(qGuardHead)
	for i, a := range sets {
		if len(a) == 0 {
			continue
		}
		fmt.Fprintf(&b, ", w%d AS (INSERT INTO %s SELECT * FROM (VALUES ", i, guardTables[i])
		for j := 0; j < len(a); j += 2 {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(guardTuples[i])
		}
		b.WriteString(") v WHERE EXISTS (SELECT 1 FROM h))")
		args = append(args, a...)
	}
	b.WriteString(qGuardSelect)
	var n int
	if err := tx.QueryRowx(tx.Rebind(b.String()), args...).Scan(&n); err != nil {
		return false, store.Translate(err, "append to the audit log")
	}
	return n == 1, nil
}

// writeValues writes prefix and rows 2-column placeholder tuples.
func writeValues(b *strings.Builder, prefix string, rows int) {
	b.WriteString(prefix)
	for i := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?)")
	}
}

// insertRows runs a multi-row INSERT of 2-column rows in chunks.
func insertRows(tx *store.Tx, prefix string, args []any) error {
	for len(args) > 0 {
		n := min(len(args), 2*rowsPerInsert)
		var b strings.Builder
		writeValues(&b, prefix, n/2)
		if _, err := tx.Exec(tx.Rebind(b.String()), args[:n]...); err != nil {
			return store.Translate(err, "append to the audit log ("+strings.TrimSpace(strings.TrimPrefix(prefix, "INSERT INTO "))+")")
		}
		args = args[n:]
	}
	return nil
}

// txHashReader reads stored hashes: first the ones computed or cached in
// this append, then the database through the transaction.
type txHashReader struct {
	tx        *store.Tx
	known     map[int64]tlog.Hash
	cacheOnly bool // fail with errNeedDB instead of reading the database
}

func (r *txHashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	var missing []int64
	for i, x := range indexes {
		h, ok := r.known[x]
		if !ok {
			missing = append(missing, x)
			continue
		}
		out[i] = h
	}
	if len(missing) > 0 && r.cacheOnly {
		return nil, errNeedDB
	}
	if len(missing) > 0 {
		got, err := readHashes(r.tx, missing)
		if err != nil {
			return nil, err
		}
		for x, h := range got {
			r.known[x] = h
		}
		for i, x := range indexes {
			h, ok := r.known[x]
			if !ok {
				return nil, tacerr.New(tacerr.LedgerInvariant, "audit stored hash %d is missing", x)
			}
			out[i] = h
		}
	}
	return out, nil
}

// dbq is what reading needs: a transaction or a pool.
type dbq interface {
	sqlx.Queryer
	Rebind(string) string
}

// readHashes reads stored hashes by index from q.
func readHashes(q dbq, indexes []int64) (map[int64]tlog.Hash, error) {
	out := make(map[int64]tlog.Hash, len(indexes))
	for len(indexes) > 0 {
		n := min(len(indexes), rowsPerInsert)
		query, args, err := sqlx.In(qReadHashes, indexes[:n])
		if err != nil {
			return nil, tacerr.Wrap(tacerr.Internal, err, "expand stored hash query")
		}
		rows, err := q.Queryx(q.Rebind(query), args...)
		if err != nil {
			return nil, store.Translate(err, "read audit stored hashes")
		}
		for rows.Next() {
			var x int64
			var b []byte
			if err := rows.Scan(&x, &b); err != nil {
				rows.Close()
				return nil, store.Translate(err, "read audit stored hashes")
			}
			h, err := hashOf(b, fmt.Sprintf("audit stored hash %d", x))
			if err != nil {
				rows.Close()
				return nil, err
			}
			out[x] = h
		}
		if err := rows.Err(); err != nil {
			rows.Close()
			return nil, store.Translate(err, "read audit stored hashes")
		}
		rows.Close()
		indexes = indexes[n:]
	}
	return out, nil
}

// dbHashReader is a tlog.HashReader over committed rows (a pool) or a
// transaction.
type dbHashReader struct{ q dbq }

func (r dbHashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	got, err := readHashes(r.q, indexes)
	if err != nil {
		return nil, err
	}
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		h, ok := got[x]
		if !ok {
			return nil, tacerr.New(tacerr.LedgerInvariant, "audit stored hash %d is missing", x)
		}
		out[i] = h
	}
	return out, nil
}

func hashOf(b []byte, what string) (tlog.Hash, error) {
	var h tlog.Hash
	if len(b) != tlog.HashSize {
		return h, tacerr.New(tacerr.LedgerInvariant, "%s holds %d bytes, not a 32-byte hash", what, len(b))
	}
	copy(h[:], b)
	return h, nil
}
