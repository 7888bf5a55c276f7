package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tacline/tacline/tacerr"
)

// The audit log's tables (audit_head, audit_leaves, audit_hashes,
// audit_imeis, audit_checkpoints) are written and read here; package audit
// computes the Merkle tree and signs checkpoints over these methods. A hash
// is 32 bytes (SHA-256); the store checks the length of every hash it reads.

// AuditHead is the committed size and root hash of the audit log, and the
// tree's right edge as the head row keeps it (migration 0019).
type AuditHead struct {
	Size int64
	Root [32]byte
	// Edge is the stored hashes of the complete subtrees that make up the
	// tree, left to right (package audit's edgeIndexes(Size)): all that an
	// append reads of the tree. The store neither computes nor checks it
	// (package audit checks it against Root before use); nil when the head
	// row holds none (written before migration 0019).
	Edge [][32]byte
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
	qAuditHead        = `SELECT size, root, edge FROM audit_head WHERE id = 1`
	qAuditUpdateHead  = `UPDATE audit_head SET size = ?, root = ?, edge = ? WHERE id = 1 AND size = ?`
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
	return scanAuditHead(tx.queryRowx(qAuditHead+tx.db.sql.forUpdate), "lock the audit log head")
}

// AuditHead returns the committed head of the audit log.
func (db *DB) AuditHead(ctx context.Context) (AuditHead, error) {
	return scanAuditHead(db.r.QueryRowxContext(ctx, qAuditHead), "read the audit log head")
}

// scanAuditHead reads size, root and edge (qAuditHead's columns).
func scanAuditHead(row interface{ Scan(...any) error }, what string) (AuditHead, error) {
	var size int64
	var root, edge []byte
	if err := row.Scan(&size, &root, &edge); err != nil {
		return AuditHead{}, translate(err, what)
	}
	return auditHead(size, root, edge)
}

// auditHead checks a head row's hashes' lengths.
func auditHead(size int64, root, edge []byte) (AuditHead, error) {
	h := AuditHead{Size: size}
	var err error
	if h.Root, err = hash32(root, "audit_head.root"); err != nil {
		return h, err
	}
	if edge == nil {
		return h, nil
	}
	if len(edge)%32 != 0 {
		return h, tacerr.New(tacerr.LedgerInvariant, "audit_head.edge holds %d bytes, not 32-byte hashes", len(edge))
	}
	h.Edge = make([][32]byte, len(edge)/32)
	for i := range h.Edge {
		copy(h.Edge[i][:], edge[32*i:])
	}
	return h, nil
}

// edgeBytes is the head row's edge column of h: its hashes concatenated,
// or NULL when h has none.
func edgeBytes(h AuditHead) []byte {
	if h.Edge == nil {
		return nil
	}
	b := make([]byte, 0, 32*len(h.Edge))
	for _, x := range h.Edge {
		b = append(b, x[:]...)
	}
	return b
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

// AppendAudit writes an append under the head lock (LockAuditHead, or
// AppendAuditIfHead's answer): its leaves, IMEI index rows and stored
// hashes, and moves the head, with its edge, from a.From to a.To. The head
// must still be at a.From.Size, else ledger_invariant. On PostgreSQL the
// head moves in one statement with the rows that fit it (all of a batch's),
// which fails in the server, dividing by the count of head rows it moved,
// when the head is elsewhere: so it is queued (pipeline.go) and goes with
// the transaction's COMMIT, in the same round trip, and the head's lock is
// held for no round trip of its own.
func (tx *Tx) AppendAudit(a *AuditAppend) error {
	sets := auditArgs(a)
	head := []any{a.To.Size, a.To.Root[:], edgeBytes(a.To), a.From.Size}
	if !tx.db.sql.guardedAppend {
		return tx.appendAuditRows(sets, head)
	}
	var b strings.Builder
	args := append(make([]any, 0, len(head)+len(sets[0])+len(sets[1])+len(sets[2])), head...)
	b.WriteString("WITH h AS (" + qAuditUpdateHead + " RETURNING 1)")
	if !auditRowCTEs(&b, &args, sets, "", tx.db.sql.arrayParams) {
		// rows for more than one statement: written first, as on SQLite
		if err := tx.appendAuditRows(sets, nil); err != nil {
			return err
		}
		b.Reset()
		args = head
		b.WriteString("WITH h AS (" + qAuditUpdateHead + " RETURNING 1)")
	}
	b.WriteString(" SELECT 1 / count(*) FROM h")
	from := a.From.Size
	fail := func(err error) error {
		var pg *pgconn.PgError
		if errors.As(err, &pg) && pg.Code == "22012" { // division_by_zero: no head row moved
			return tacerr.New(tacerr.LedgerInvariant, "audit log head moved from size %d during the append", from)
		}
		return translate(err, "append to the audit log")
	}
	check := func(n int64) error { return rowCount(n, 1, "append to the audit log") }
	if !tx.queueWrite(tx.rebind(b.String()), args, check, fail, true) {
		res, err := tx.exec(tx.rebind(b.String()), args...)
		if err != nil {
			return fail(err)
		}
		if err := checkRows(res, 1, "append to the audit log"); err != nil {
			return err
		}
	}
	tx.audit = auditSpan{from: a.From.Size, n: len(a.Leaves)}
	return nil
}

// appendAuditRows writes an append's rows with the multi-row writer and,
// unless head is nil, then moves the head (SQLite; PostgreSQL when the rows
// do not fit one statement).
func (tx *Tx) appendAuditRows(sets [3][]any, head []any) error {
	for i, s := range sets {
		ins := auditInserts[i].head
		if i == 2 && tx.db.sql.stagedAuditIMEIs {
			ins = qAuditInsertStaged
		}
		w := tx.rows(ins, auditInserts[i].tuple, 2, "append to the audit log").sized(len(s) / 2)
		for j := 0; j < len(s); j += 2 {
			if err := w.add(s[j], s[j+1]); err != nil {
				return err
			}
		}
		if err := w.flush(); err != nil {
			return err
		}
	}
	if head == nil {
		return nil
	}
	res, err := tx.exec(tx.rebind(qAuditUpdateHead), head...)
	if err != nil {
		return translate(err, "append to the audit log")
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return tacerr.New(tacerr.LedgerInvariant, "audit log head moved from size %d during the append (rows affected %d, %v)", head[3], n, err)
	}
	size, to := head[3].(int64), head[0].(int64)
	if tx.db.sql.stagedAuditIMEIs && size/auditIMEIStage != to/auditIMEIStage {
		if err := tx.moveStagedAuditIMEIs(); err != nil {
			return err
		}
	}
	tx.audit = auditSpan{from: size, n: int(to - size)}
	return nil
}

// auditRowCTEs adds to b, after a first CTE, one CTE per table that gets
// rows (", wI AS (INSERT ...)"), each inserting only if cond (a
// condition on the earlier CTEs; "" for none), and their parameters to
// args: as one array per column when arrays is set, else as VALUES. false
// (b and args unchanged) when the rows do not fit one statement.
func auditRowCTEs(b *strings.Builder, args *[]any, sets [3][]any, cond string, arrays bool) bool {
	total := len(*args)
	for _, s := range sets {
		total += len(s)
	}
	if total > maxParams {
		return false
	}
	where := ""
	if cond != "" {
		where = " WHERE " + cond
	}
	for i, s := range sets {
		if len(s) == 0 {
			continue
		}
		if arrays {
			// One array per column: the statement's text depends only on
			// which of the three tables get rows (see Tx.in).
			c0, t0, ok0 := column(s, 0, 2, len(s)/2)
			c1, t1, ok1 := column(s, 1, 2, len(s)/2)
			if ok0 && ok1 {
				fmt.Fprintf(b, ", w%d AS (INSERT INTO %s SELECT * FROM unnest(?::%s, ?::%s) v%s)", i, auditInserts[i].table, t0, t1, where)
				*args = append(*args, c0, c1)
				continue
			}
		}
		fmt.Fprintf(b, ", w%d AS (%s) v%s)", i,
			multiRow("INSERT INTO "+auditInserts[i].table+" SELECT * FROM (VALUES ", auditInserts[i].typed, len(s)/2), where)
		*args = append(*args, s...)
	}
	return true
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

// qAuditLockIfMissed is the last CTE of AppendAuditIfHead: when the guarded
// update (h) moved nothing, the head row, locked; after a wait for the
// transaction that holds it, PostgreSQL locks and answers the newest
// version of the row (READ COMMITTED).
const qAuditLockIfMissed = `, c AS (SELECT size, root, edge FROM audit_head WHERE id = 1 AND NOT EXISTS (SELECT 1 FROM h) FOR UPDATE)
SELECT n.n, c.size, c.root, c.edge FROM (SELECT count(*) AS n FROM h) n LEFT JOIN c ON true`

// AppendAuditIfHead writes the append in one statement if the head still
// is a.From (size and root), reporting whether it did. When it did not
// (another replica moved the head), nothing was written and the same
// statement locked the head and returns it (head, as LockAuditHead would:
// the caller appends to it with AppendAudit, no more statements on the
// way). head is nil too when nothing ran: the rows do not fit one
// statement, or the database cannot (CanAppendAuditUnlocked).
func (tx *Tx) AppendAuditIfHead(a *AuditAppend) (done bool, head *AuditHead, err error) {
	if !tx.CanAppendAuditUnlocked() {
		return false, nil, nil
	}
	sets := auditArgs(a)
	args := []any{a.To.Size, a.To.Root[:], edgeBytes(a.To), a.From.Size, a.From.Root[:]}
	var b strings.Builder
	b.WriteString(`WITH h AS (UPDATE audit_head SET size = ?, root = ?, edge = ? WHERE id = 1 AND size = ? AND root = ? RETURNING 1)`)
	if !auditRowCTEs(&b, &args, sets, "EXISTS (SELECT 1 FROM h)", tx.db.sql.arrayParams) {
		return false, nil, nil
	}
	b.WriteString(qAuditLockIfMissed)
	var n int
	var size sql.NullInt64
	var root, edge []byte
	if err := tx.queryRowx(tx.rebind(b.String()), args...).Scan(&n, &size, &root, &edge); err != nil {
		return false, nil, translate(err, "append to the audit log")
	}
	if n == 1 {
		tx.audit = auditSpan{from: a.From.Size, n: len(a.Leaves)}
		return true, nil, nil
	}
	if !size.Valid {
		return false, nil, tacerr.New(tacerr.LedgerInvariant, "the audit log has no head row")
	}
	h, err := auditHead(size.Int64, root, edge)
	if err != nil {
		return false, nil, err
	}
	return false, &h, nil
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
