package store

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/tacline/tacline/tacerr"
)

// The audit log's tables (audit_head, audit_leaves, audit_hashes,
// audit_imeis, audit_checkpoints) are written and read here; package audit
// computes the Merkle tree and signs checkpoints over these methods. A hash
// is 32 bytes (SHA-256); the store checks the length of every hash it reads.

// AuditHead is the committed size and root hash of the audit log.
type AuditHead struct {
	Size int64
	Root [32]byte
}

// AuditLeaf is one appended record: its index, its encoded event and the
// 15-digit IMEIs it names (indexed for proofs by IMEI).
type AuditLeaf struct {
	Index int64
	Data  []byte
	IMEIs []string
}

// AuditHash is one stored hash of the tree (tlog's stored hash index).
type AuditHash struct {
	Index int64
	Hash  [32]byte
}

// AuditAppend is one append: the leaves and stored hashes it adds and the
// head it moves from From to To.
type AuditAppend struct {
	From, To AuditHead
	Leaves   []AuditLeaf
	Hashes   []AuditHash
}

// AuditCheckpoint is a signed checkpoint as stored: size, root, the signed
// note and the verifier key of the key that signed it.
type AuditCheckpoint struct {
	Size        int64
	Root        [32]byte
	Note        []byte
	VerifierKey string
}

const (
	qAuditHead        = `SELECT size, root FROM audit_head WHERE id = 1`
	qAuditUpdateHead  = `UPDATE audit_head SET size = ?, root = ? WHERE id = 1 AND size = ?`
	qAuditReadHashes  = `SELECT idx, hash FROM audit_hashes WHERE idx IN (?)`
	qAuditLeavesRange = `SELECT idx, data FROM audit_leaves WHERE idx >= ? AND idx < ? ORDER BY idx`
	qAuditLeavesAt    = `SELECT idx, data FROM audit_leaves WHERE idx IN (?)`
	qAuditIMEILeaves  = `SELECT l.idx, l.data FROM audit_leaves l WHERE l.idx IN
	(SELECT idx FROM audit_imeis WHERE imei = ? UNION ALL SELECT idx FROM audit_imeis_staged WHERE imei = ?) ORDER BY l.idx`
	qAuditLatestCP = `SELECT size, root, note, vkey FROM audit_checkpoints ORDER BY size DESC LIMIT 1`
	qAuditCPAt     = `SELECT size, root, note, vkey FROM audit_checkpoints WHERE size = ?`
	qAuditInsertCP = `INSERT INTO audit_checkpoints (size, root, note, vkey, created_at) VALUES (?, ?, ?, ?, ?)`
)

// The staged IMEI index rows (dialect stagedAuditIMEIs): appended with the
// leaves, moved into audit_imeis, sorted by IMEI, whenever an append
// crosses a multiple of auditIMEIStage leaves. audit_imeis is keyed by
// IMEI, so inserting each commit's rows dirtied one leaf page per pool the
// commit touched (about one per device); moved in bulk, a leaf page takes
// the rows of many devices of its pool at once. The staged table holds the
// rows of at most auditIMEIStage leaves plus one append's, and a lookup by
// IMEI scans it.
const (
	auditIMEIStage        = 2048
	qAuditInsertStaged    = `INSERT INTO audit_imeis_staged (imei, idx) VALUES `
	qAuditMoveStagedIMEIs = `INSERT INTO audit_imeis (imei, idx) SELECT imei, idx FROM audit_imeis_staged ORDER BY imei, idx`
	qAuditClearStaged     = `DELETE FROM audit_imeis_staged`
)

var auditInserts = [3]struct{ head, tuple, table, typed string }{
	{`INSERT INTO audit_leaves (idx, data) VALUES `, "(?,?)", "audit_leaves (idx, data)", "(?::bigint,?::bytea)"},
	{`INSERT INTO audit_hashes (idx, hash) VALUES `, "(?,?)", "audit_hashes (idx, hash)", "(?::bigint,?::bytea)"},
	{`INSERT INTO audit_imeis (imei, idx) VALUES `, "(?,?)", "audit_imeis (imei, idx)", "(?::text,?::bigint)"},
}

// LockAuditHead returns the audit log's head and holds it until tx ends:
// no other transaction appends meanwhile (a row lock on PostgreSQL; SQLite's
// write transaction already excludes other writers).
func (tx *Tx) LockAuditHead() (AuditHead, error) {
	q := qAuditHead + tx.db.sql.forUpdate
	var size int64
	var root []byte
	if err := tx.queryRowx(q).Scan(&size, &root); err != nil {
		return AuditHead{}, translate(err, "lock the audit log head")
	}
	h, err := hash32(root, "audit_head.root")
	return AuditHead{Size: size, Root: h}, err
}

// AuditHead returns the committed head of the audit log.
func (db *DB) AuditHead(ctx context.Context) (AuditHead, error) {
	var size int64
	var root []byte
	if err := db.r.QueryRowxContext(ctx, qAuditHead).Scan(&size, &root); err != nil {
		return AuditHead{}, translate(err, "read the audit log head")
	}
	h, err := hash32(root, "audit_head.root")
	return AuditHead{Size: size, Root: h}, err
}

// AuditHashes returns the stored hashes of the given indexes that exist, as
// tx sees them; a missing index is absent from the map (the caller decides
// whether that breaks the log).
func (tx *Tx) AuditHashes(indexes []int64) (map[int64][32]byte, error) {
	return readAuditHashes(txQuerier{tx}, indexes)
}

// AuditHashes returns committed stored hashes (see Tx.AuditHashes).
func (db *DB) AuditHashes(ctx context.Context, indexes []int64) (map[int64][32]byte, error) {
	return readAuditHashes(db.r, indexes)
}

func readAuditHashes(q querier, indexes []int64) (map[int64][32]byte, error) {
	out := make(map[int64][32]byte, len(indexes))
	for len(indexes) > 0 {
		n := min(len(indexes), maxParams/2)
		query, args, err := sqlxIn(qAuditReadHashes, indexes[:n])
		if err != nil {
			return nil, err
		}
		var rows []struct {
			Idx  int64  `db:"idx"`
			Hash []byte `db:"hash"`
		}
		if err := q.Select(&rows, q.Rebind(query), args...); err != nil {
			return nil, translate(err, "read audit stored hashes")
		}
		for _, r := range rows {
			h, err := hash32(r.Hash, fmt.Sprintf("audit stored hash %d", r.Idx))
			if err != nil {
				return nil, err
			}
			out[r.Idx] = h
		}
		indexes = indexes[n:]
	}
	return out, nil
}

// AppendAudit writes an append under the head lock (LockAuditHead): its
// leaves, IMEI index rows and stored hashes, and moves the head from a.From
// to a.To. The head must still be at a.From.Size, else ledger_invariant.
// On PostgreSQL, when the rows fit one statement, it is one round trip.
func (tx *Tx) AppendAudit(a *AuditAppend) error {
	sets := auditArgs(a)
	head := []any{a.To.Size, a.To.Root[:], a.From.Size}
	total := len(head)
	for _, s := range sets {
		total += len(s)
	}
	var b strings.Builder
	args := make([]any, 0, total)
	if !tx.db.sql.guardedAppend || total > maxParams {
		for i, s := range sets {
			head := auditInserts[i].head
			if i == 2 && tx.db.sql.stagedAuditIMEIs {
				head = qAuditInsertStaged
			}
			w := tx.rows(head, auditInserts[i].tuple, 2, "append to the audit log")
			for j := 0; j < len(s); j += 2 {
				if err := w.add(s[j], s[j+1]); err != nil {
					return err
				}
			}
			if err := w.flush(); err != nil {
				return err
			}
		}
	} else {
		n := 0
		for i, s := range sets {
			if len(s) == 0 {
				continue
			}
			if n == 0 {
				fmt.Fprintf(&b, "WITH w%d AS (", i)
			} else {
				fmt.Fprintf(&b, ", w%d AS (", i)
			}
			b.WriteString(multiRow(auditInserts[i].head, auditInserts[i].tuple, len(s)/2))
			b.WriteString(") ")
			args = append(args, s...)
			n++
		}
	}
	b.WriteString(qAuditUpdateHead)
	args = append(args, head...)
	res, err := tx.exec(tx.rebind(b.String()), args...)
	if err != nil {
		return translate(err, "append to the audit log")
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return tacerr.New(tacerr.LedgerInvariant, "audit log head moved from size %d during the append (rows affected %d, %v)", a.From.Size, n, err)
	}
	if tx.db.sql.stagedAuditIMEIs && a.From.Size/auditIMEIStage != a.To.Size/auditIMEIStage {
		if err := tx.moveStagedAuditIMEIs(); err != nil {
			return err
		}
	}
	tx.audit = auditSpan{from: a.From.Size, n: len(a.Leaves)}
	return nil
}

// moveStagedAuditIMEIs moves the staged IMEI index rows into audit_imeis,
// in IMEI order (see auditIMEIStage).
func (tx *Tx) moveStagedAuditIMEIs() error {
	if _, err := tx.exec(qAuditMoveStagedIMEIs); err != nil {
		return translate(err, "move the audit log's staged IMEI index rows")
	}
	if _, err := tx.exec(qAuditClearStaged); err != nil {
		return translate(err, "clear the audit log's staged IMEI index rows")
	}
	return nil
}

// auditSpan is where one flush's events went in the audit log: leaves
// from, from+1, ... from+n-1, in the order of the events.
type auditSpan struct {
	from int64
	n    int
}

// AuditLeafIndexes returns the audit leaf index of each of events, the
// events the sinks are appending in this flush, once the audit log (a sink
// registered before the caller) has appended them; ledger_invariant when it
// has not (no audit log, or one registered after the caller).
func (tx *Tx) AuditLeafIndexes(events []Event) ([]int64, error) {
	if tx.audit.n != len(events) || len(events) == 0 {
		return nil, tacerr.New(tacerr.LedgerInvariant, "the audit log did not append this change's %d events before this sink (it must be attached first)", len(events))
	}
	out := make([]int64, len(events))
	for i := range out {
		out[i] = tx.audit.from + int64(i)
	}
	return out, nil
}

// CanAppendAuditUnlocked reports whether AppendAuditIfHead can append
// without LockAuditHead first (PostgreSQL: one statement that takes the
// head's lock by updating it only if it is still the expected head).
func (tx *Tx) CanAppendAuditUnlocked() bool { return tx.db.sql.guardedAppend }

// AppendAuditIfHead writes the append in one statement if the head still
// is a.From (size and root), reporting whether it did; false with a nil
// error means nothing was written (another replica moved the head, the rows
// do not fit one statement, or the database cannot: CanAppendAuditUnlocked).
func (tx *Tx) AppendAuditIfHead(a *AuditAppend) (bool, error) {
	if !tx.CanAppendAuditUnlocked() {
		return false, nil
	}
	sets := auditArgs(a)
	args := []any{a.To.Size, a.To.Root[:], a.From.Size, a.From.Root[:]}
	total := len(args)
	for _, s := range sets {
		total += len(s)
	}
	if total > maxParams {
		return false, nil
	}
	var b strings.Builder
	b.WriteString(`WITH h AS (UPDATE audit_head SET size = ?, root = ? WHERE id = 1 AND size = ? AND root = ? RETURNING 1)`)
	for i, s := range sets {
		if len(s) == 0 {
			continue
		}
		if tx.db.sql.arrayParams {
			// One array per column: the statement's text depends only on
			// which of the three tables get rows (see Tx.in).
			c0, t0, ok0 := column(s, 0, 2, len(s)/2)
			c1, t1, ok1 := column(s, 1, 2, len(s)/2)
			if ok0 && ok1 {
				fmt.Fprintf(&b, ", w%d AS (INSERT INTO %s SELECT * FROM unnest(?::%s, ?::%s) v WHERE EXISTS (SELECT 1 FROM h))", i, auditInserts[i].table, t0, t1)
				args = append(args, c0, c1)
				continue
			}
		}
		fmt.Fprintf(&b, ", w%d AS (%s) v WHERE EXISTS (SELECT 1 FROM h))", i,
			multiRow("INSERT INTO "+auditInserts[i].table+" SELECT * FROM (VALUES ", auditInserts[i].typed, len(s)/2))
		args = append(args, s...)
	}
	b.WriteString(` SELECT count(*) FROM h`)
	var n int
	if err := tx.queryRowx(tx.rebind(b.String()), args...).Scan(&n); err != nil {
		return false, translate(err, "append to the audit log")
	}
	if n == 1 {
		tx.audit = auditSpan{from: a.From.Size, n: len(a.Leaves)}
	}
	return n == 1, nil
}

// auditArgs flattens an append's rows: leaves, hashes, IMEI index rows.
func auditArgs(a *AuditAppend) [3][]any {
	var sets [3][]any
	sets[0] = make([]any, 0, 2*len(a.Leaves))
	sets[1] = make([]any, 0, 2*len(a.Hashes))
	for _, l := range a.Leaves {
		sets[0] = append(sets[0], l.Index, l.Data)
		for _, m := range l.IMEIs {
			sets[2] = append(sets[2], m, l.Index)
		}
	}
	for _, h := range a.Hashes {
		sets[1] = append(sets[1], h.Index, h.Hash[:])
	}
	return sets
}

// AuditLeaves calls fn for each leaf with from <= index < to, in index
// order, streaming (the leaves are never all in memory). data is valid only
// during the call. An error from fn stops the walk and is returned as is.
func (db *DB) AuditLeaves(ctx context.Context, from, to int64, fn func(index int64, data []byte) error) error {
	return db.auditLeaves(ctx, qAuditLeavesRange, "read audit leaves", fn, from, to)
}

// AuditLeavesOf calls fn, like AuditLeaves, for each leaf that names the
// IMEI (15 digits), in index order.
func (db *DB) AuditLeavesOf(ctx context.Context, imei15 string, fn func(index int64, data []byte) error) error {
	return db.auditLeaves(ctx, qAuditIMEILeaves, "read the audit events of "+imei15, fn, imei15, imei15)
}

// AuditLeavesAt returns the leaves at the given indexes (a site's sync
// batch proves each event's leaf); not_found when one of them is not in
// the log.
func (db *DB) AuditLeavesAt(ctx context.Context, indexes []int64) (map[int64][]byte, error) {
	out := make(map[int64][]byte, len(indexes))
	for rest := indexes; len(rest) > 0; {
		n := min(len(rest), maxParams)
		q, args, err := sqlxIn(qAuditLeavesAt, rest[:n])
		if err != nil {
			return nil, err
		}
		err = db.auditLeaves(ctx, q, "read audit leaves", func(idx int64, data []byte) error {
			out[idx] = bytes.Clone(data)
			return nil
		}, args...)
		if err != nil {
			return nil, err
		}
		rest = rest[n:]
	}
	for _, x := range indexes {
		if _, ok := out[x]; !ok {
			return nil, tacerr.New(tacerr.NotFound, "audit leaf %d is not in the log", x)
		}
	}
	return out, nil
}

func (db *DB) auditLeaves(ctx context.Context, q, what string, fn func(int64, []byte) error, args ...any) error {
	rows, err := db.r.QueryContext(ctx, db.r.Rebind(q), args...)
	if err != nil {
		return translate(err, what)
	}
	defer rows.Close()
	var data sql.RawBytes // valid until the next Next
	for rows.Next() {
		var idx int64
		if err := rows.Scan(&idx, &data); err != nil {
			return translate(err, what)
		}
		if err := fn(idx, data); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return translate(err, what)
	}
	return nil
}

// LatestAuditCheckpoint returns the newest stored checkpoint, or not_found
// (message notFound) when none was signed yet.
func (db *DB) LatestAuditCheckpoint(ctx context.Context, notFound string) (AuditCheckpoint, error) {
	return scanAuditCheckpoint(db.r.QueryRowxContext(ctx, qAuditLatestCP), notFound)
}

// LatestAuditCheckpoint is LatestAuditCheckpoint inside tx.
func (tx *Tx) LatestAuditCheckpoint(notFound string) (AuditCheckpoint, error) {
	return scanAuditCheckpoint(tx.queryRowx(qAuditLatestCP), notFound)
}

// AuditCheckpointAt returns the stored checkpoint of size n, or not_found
// (message notFound).
func (db *DB) AuditCheckpointAt(ctx context.Context, n int64, notFound string) (AuditCheckpoint, error) {
	return scanAuditCheckpoint(db.r.QueryRowxContext(ctx, db.r.Rebind(qAuditCPAt), n), notFound)
}

// AddAuditCheckpoint stores a signed checkpoint (one per size).
func (tx *Tx) AddAuditCheckpoint(c AuditCheckpoint) error {
	if _, err := tx.exec(tx.rebind(qAuditInsertCP), c.Size, c.Root[:], string(c.Note), c.VerifierKey, tx.Now().UnixMicro()); err != nil {
		return translate(err, "store audit checkpoint")
	}
	return nil
}

func scanAuditCheckpoint(row interface{ Scan(...any) error }, notFound string) (AuditCheckpoint, error) {
	var c AuditCheckpoint
	var root []byte
	var note string
	if err := row.Scan(&c.Size, &root, &note, &c.VerifierKey); err != nil {
		if noRows(err) {
			return c, tacerr.New(tacerr.NotFound, "%s", notFound)
		}
		return c, translate(err, "read audit checkpoint")
	}
	h, err := hash32(root, "audit_checkpoints.root")
	c.Root, c.Note = h, []byte(note)
	return c, err
}

func hash32(b []byte, what string) ([32]byte, error) {
	var h [32]byte
	if len(b) != len(h) {
		return h, tacerr.New(tacerr.LedgerInvariant, "%s holds %d bytes, not a 32-byte hash", what, len(b))
	}
	copy(h[:], b)
	return h, nil
}

// AuditStats is the audit log's state for monitoring.
type AuditStats struct {
	HeadSize       int64     // events appended
	CheckpointSize int64     // size of the newest signed checkpoint (0: none)
	CheckpointAt   time.Time // when it was signed (zero: none)
}

const qAuditStats = `SELECT h.size, COALESCE(c.size, 0), COALESCE(c.created_at, 0)
FROM audit_head h LEFT JOIN (SELECT size, created_at FROM audit_checkpoints ORDER BY size DESC LIMIT 1) c ON 1 = 1`

// AuditStats reads the head and the newest checkpoint in one statement.
func (db *DB) AuditStats(ctx context.Context) (AuditStats, error) {
	var s AuditStats
	var at int64
	err := db.r.QueryRowxContext(ctx, qAuditStats).Scan(&s.HeadSize, &s.CheckpointSize, &at)
	if noRows(err) {
		return s, nil
	}
	if err != nil {
		return s, translate(err, "read audit log statistics")
	}
	if at > 0 {
		s.CheckpointAt = time.UnixMicro(at).UTC()
	}
	return s, nil
}

// AuditCheckpointInfo is a stored checkpoint's size, root and signing time.
type AuditCheckpointInfo struct {
	Size     int64
	Root     [32]byte
	SignedAt time.Time
}

const qAuditRecentCPs = `SELECT size, root, created_at FROM audit_checkpoints ORDER BY size DESC LIMIT ?`

// RecentAuditCheckpoints returns the newest limit stored checkpoints,
// newest first (their notes unread: for lists, not for verification).
func (db *DB) RecentAuditCheckpoints(ctx context.Context, limit int) ([]AuditCheckpointInfo, error) {
	var rows []struct {
		Size int64  `db:"size"`
		Root []byte `db:"root"`
		At   int64  `db:"created_at"`
	}
	if err := db.r.SelectContext(ctx, &rows, db.r.Rebind(qAuditRecentCPs), limit); err != nil {
		return nil, translate(err, "list audit checkpoints")
	}
	out := make([]AuditCheckpointInfo, len(rows))
	for i, r := range rows {
		h, err := hash32(r.Root, "audit_checkpoints.root")
		if err != nil {
			return nil, err
		}
		out[i] = AuditCheckpointInfo{Size: r.Size, Root: h, SignedAt: time.UnixMicro(r.At).UTC()}
	}
	return out, nil
}
