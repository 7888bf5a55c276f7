package audit

import (
	"context"
	"crypto"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	// WitnessKeyLabel is the label of the Ed25519 key in the HSM with which
	// headquarters cosigns the site checkpoints it verified
	// (tlog-cosignature/v1, cosign.go); the witness name is Origin.
	WitnessKeyLabel string `yaml:"witness_key_label" doc:"label of the Ed25519 witness key in the HSM with which headquarters cosigns its sites' checkpoints (C2SP tlog-cosignature/v1; tacline audit witness-key --generate makes it); empty: this server cosigns none and refuses site syncs"`
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
	// appends that read stored hashes (neither the head row's edge nor
	// the cache held the tree's edge)
	hashReads atomic.Int64
	// moved: the last locked append found the head moved from where this
	// replica left it, so the next one locks first instead of guessing
	// (a guess would likely miss: with several replicas most do, and a
	// missed guess computes and sends its rows for nothing).
	moved atomic.Bool
}

// AppendStats counts appends by how they found the head: guessed (one
// guarded statement on PostgreSQL) or locked (read under the lock).
func (l *Log) AppendStats() (guessed, locked int64) {
	return l.guessed.Load(), l.locked.Load()
}

// HashReads counts the appends that read stored hashes from the database:
// neither the head row's edge (headEdge) nor this replica's cache held the
// edge of the tree they appended to (the first append after migration
// 0019, or after an older binary appended).
func (l *Log) HashReads() int64 { return l.hashReads.Load() }

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

// Append appends events to the log inside tx (store.Sink). Leaf indexes are
// assigned under the head row's lock: SELECT ... FOR UPDATE on PostgreSQL,
// the single-writer transaction on SQLite. On PostgreSQL, when this replica
// knows the head it committed last, it first tries one guarded statement
// that takes the same lock by updating the head only if it is still that
// head, and writes the rows only then; another replica having appended
// meanwhile makes it write nothing and answer the head it locked instead,
// with the tree's edge, and the append to that head follows (the locked
// path: no further read). After a locked append that found the head moved
// from where this replica left it, the next append locks first
// (LockAuditHead answers the edge too, in the same round trip as the
// batch's writes), and guesses again once the head stayed where it left
// it: a lone replica always guesses. The head row's edge is used only when
// it hashes to the head's root (headEdge); else the stored hashes are read.
func (l *Log) Append(tx *store.Tx, events []store.Event) error {
	if len(events) == 0 {
		return nil
	}
	var head *store.AuditHead
	if tx.CanAppendAuditUnlocked() && !l.moved.Load() {
		if g, ok := l.guess(); ok {
			done, cur, err := l.appendAt(tx, events, store.AuditHead{Size: g.size, Root: g.root}, g.hashes, true)
			if done {
				l.guessed.Add(1)
			}
			if err != nil || done {
				return err
			}
			head = cur
		}
	}
	if head == nil {
		h, err := tx.LockAuditHead()
		if err != nil {
			return err
		}
		head = &h
	}
	known, moved := l.cachedEdge(head.Size, head.Root)
	l.moved.Store(moved)
	if e := headEdge(*head); e != nil {
		known = e
	}
	_, _, err := l.appendAt(tx, events, *head, known, false)
	if err == nil {
		l.locked.Add(1)
	}
	return err
}

// headEdge returns the stored hashes of the tree's edge that the head row
// h holds, if they hash to h's root: then (SHA-256 being collision
// resistant) they are the committed ones, and an edge written by a
// rolled-back append or left behind by an older binary cannot pass. nil
// when the row holds none that does.
func headEdge(h store.AuditHead) map[int64]tlog.Hash {
	idx := edgeIndexes(h.Size)
	m := make(map[int64]tlog.Hash, len(idx)+64)
	if h.Size == 0 {
		return m
	}
	if len(h.Edge) != len(idx) {
		return nil
	}
	for i, x := range idx {
		m[x] = h.Edge[i]
	}
	if root, err := tlog.TreeHash(h.Size, memHashes(m)); err != nil || root != h.Root {
		return nil
	}
	return m
}

// errNeedDB stops a guessed append that would have to read stored hashes.
var errNeedDB = errors.New("stored hash not cached")

// appendAt appends events to the tree from (its size and root), whose edge
// hashes are (at least partly) in known. With guessed set, the head is not
// locked yet: it writes only if the head still is from and reports false,
// having written nothing, otherwise, with the head it locked instead (nil
// when it locked none).
func (l *Log) appendAt(tx *store.Tx, events []store.Event, from store.AuditHead, known map[int64]tlog.Hash, guessed bool) (bool, *store.AuditHead, error) {
	r := &txHashReader{tx: tx, known: known, cacheOnly: guessed}
	a := &store.AuditAppend{From: store.AuditHead{Size: from.Size, Root: from.Root}}
	err := buildAppend(a, events, r, r.known)
	if errors.Is(err, errNeedDB) {
		return false, nil, nil
	}
	if err != nil {
		return false, nil, err
	}
	if guessed {
		if ok, cur, err := tx.AppendAuditIfHead(a); err != nil || !ok {
			return false, cur, err
		}
	} else if err := tx.AppendAudit(a); err != nil {
		return false, nil, err
	}
	if r.read {
		l.hashReads.Add(1)
	}
	l.remember(a.To)
	if a.From.Size/l.cfg.every() != a.To.Size/l.cfg.every() {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
	return true, nil, nil
}

// buildAppend fills a (whose From is set) with the leaves, IMEI index rows
// and stored hashes of events appended to the tree of size a.From.Size, and
// its new head. Stored hashes computed are added to known; r reads the
// others (the tree's edge).
func buildAppend(a *store.AuditAppend, events []store.Event, r tlog.HashReader, known map[int64]tlog.Hash) error {
	size := a.From.Size
	a.Leaves = make([]store.AuditLeaf, 0, len(events))
	for i, e := range events {
		n := size + int64(i)
		data, err := EncodeEvent(e)
		if err != nil {
			return err
		}
		hs, err := tlog.StoredHashesForRecordHash(n, tlog.RecordHash(data), r)
		if errors.Is(err, errNeedDB) {
			return err
		}
		if err != nil {
			return store.Translate(err, "compute audit stored hashes")
		}
		base := tlog.StoredHashIndex(0, n)
		for j, h := range hs {
			known[base+int64(j)] = h
			a.Hashes = append(a.Hashes, store.AuditHash{Index: base + int64(j), Hash: h})
		}
		leaf := store.AuditLeaf{Index: n, Data: data, IMEIs: make([]string, len(e.IMEIs))}
		for j, m := range e.IMEIs {
			leaf.IMEIs[j] = normIMEI(m)
		}
		a.Leaves = append(a.Leaves, leaf)
	}
	newSize := size + int64(len(events))
	newRoot, err := tlog.TreeHash(newSize, r)
	if errors.Is(err, errNeedDB) {
		return err
	}
	if err != nil {
		return store.Translate(err, "compute audit root")
	}
	idx := edgeIndexes(newSize)
	edge := make([][32]byte, len(idx))
	for i, x := range idx {
		h, ok := known[x]
		if !ok {
			return tacerr.New(tacerr.Internal, "audit append: edge hash %d not computed", x)
		}
		edge[i] = h
	}
	a.To = store.AuditHead{Size: newSize, Root: newRoot, Edge: edge}
	return nil
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
// belong to the tree (size, root), else an empty map; moved reports that
// the cache holds another tree (another replica appended since this one
// did, or this one's last append was rolled back).
func (l *Log) cachedEdge(size int64, root tlog.Hash) (known map[int64]tlog.Hash, moved bool) {
	m := make(map[int64]tlog.Hash, 64)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.edge.hashes == nil {
		return m, false
	}
	if l.edge.size != size || l.edge.root != root {
		return m, true
	}
	for k, v := range l.edge.hashes {
		m[k] = v
	}
	return m, false
}

// remember caches the edge of the tree h (as buildAppend filled it).
func (l *Log) remember(h store.AuditHead) {
	idx := edgeIndexes(h.Size)
	if len(h.Edge) != len(idx) {
		return
	}
	m := make(map[int64]tlog.Hash, len(idx))
	for i, x := range idx {
		m[x] = h.Edge[i]
	}
	l.mu.Lock()
	l.edge = edgeCache{size: h.Size, root: h.Root, hashes: m}
	l.mu.Unlock()
}

// txHashReader reads stored hashes: first the ones computed or cached in
// this append, then the database through the transaction.
type txHashReader struct {
	tx        *store.Tx
	known     map[int64]tlog.Hash
	cacheOnly bool // fail with errNeedDB instead of reading the database
	read      bool // stored hashes were read from the database
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
		r.read = true
		got, err := r.tx.AuditHashes(missing)
		if err != nil {
			return nil, err
		}
		for x, h := range got {
			r.known[x] = tlog.Hash(h)
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

// dbHashReader is a tlog.HashReader over committed rows.
type dbHashReader struct {
	ctx context.Context
	db  *store.DB
}

func (r dbHashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	return requireHashes(r.db.AuditHashes(r.ctx, indexes))(indexes)
}

// txHashesReader is a tlog.HashReader over a transaction's rows.
type txHashesReader struct{ tx *store.Tx }

func (r txHashesReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	return requireHashes(r.tx.AuditHashes(indexes))(indexes)
}

// requireHashes orders the hashes read by indexes, failing on a missing one.
func requireHashes(got map[int64][32]byte, err error) func([]int64) ([]tlog.Hash, error) {
	return func(indexes []int64) ([]tlog.Hash, error) {
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
}
