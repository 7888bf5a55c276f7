package store

import (
	"context"
	"regexp"
	"strconv"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/lifecycle"
	"github.com/tacline/tacline/tacerr"
)

// Pool is an SNR range inside one TAC assigned to a factory, line and
// product. Pools of one TAC never overlap.
type Pool struct {
	ID       int64
	Name     string
	TAC      uint32
	SNRStart uint32 // first SNR
	SNREnd   uint32 // last SNR, inclusive
	Factory  string
	Line     string
	Product  string
	Market   string // the market the devices are approved for (ISO 3166 or regional code)
}

// PoolStats is a pool with its utilisation.
type PoolStats struct {
	Pool
	NextSNR  uint32 // high-water mark: SNRs below it all have a ledger row
	Reserved int64
	Bound    int64
	Voided   int64
	Revoked  int64
	Free     int64 // SNRs never handed out
}

var poolName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Validate names the first wrong field.
func (p Pool) Validate() error {
	switch {
	case !poolName.MatchString(p.Name):
		return tacerr.Field(tacerr.InvalidInput, "name", "pool name %q must be 1-64 letters, digits, '.', '_' or '-'", p.Name)
	case p.TAC > imei.MaxTAC:
		return tacerr.Field(tacerr.InvalidInput, "tac", "must have 8 digits")
	case p.SNREnd > 999999:
		return tacerr.Field(tacerr.InvalidInput, "snr_end", "must be at most 999999")
	case p.SNRStart > p.SNREnd:
		return tacerr.Field(tacerr.InvalidInput, "snr_start", "%06d is after snr_end %06d", p.SNRStart, p.SNREnd)
	}
	return nil
}

const sqlInsertPool = `INSERT INTO pools (name, tac, snr_start, snr_end, next_snr, factory, line, product, market, created_at)
	VALUES (?,?,?,?,?,?,?,?,?,?)`

// CreatePool creates a pool. Errors: tac_unknown, pool_overlap (the database
// refuses a range overlapping another pool of the TAC), conflict (name taken).
func (db *DB) CreatePool(ctx context.Context, p Pool, actor string) (Pool, error) {
	if err := p.Validate(); err != nil {
		return Pool{}, err
	}
	err := db.InTx(ctx, func(tx *Tx) error {
		var n int
		if err := tx.get(&n, tx.rebind(`SELECT COUNT(*) FROM tacs WHERE tac = ?`), int64(p.TAC)); err != nil {
			return translate(err, "look up TAC")
		}
		if n == 0 {
			return tacerr.Field(tacerr.TACUnknown, "tac", "TAC %s is not in the catalogue; add it first", imei.FormatTAC(p.TAC))
		}
		err := tx.queryRowx(tx.rebind(sqlInsertPool+" RETURNING id"), p.Name, int64(p.TAC), int64(p.SNRStart), int64(p.SNREnd),
			int64(p.SNRStart), p.Factory, p.Line, p.Product, p.Market, tx.Now().UnixMicro()).Scan(&p.ID)
		switch {
		case err == nil:
		case isExclusion(err):
			return tacerr.Field(tacerr.PoolOverlap, "snr_start", "SNR range %06d-%06d overlaps another pool of TAC %s; `tacline pool list` shows them",
				p.SNRStart, p.SNREnd, imei.FormatTAC(p.TAC))
		case isDuplicate(err):
			return tacerr.Field(tacerr.Conflict, "name", "a pool named %q exists already", p.Name)
		default:
			return translate(err, "create pool")
		}
		tx.Emit(Event{Type: EventPoolCreated, Actor: actor, Pool: p.Name, TAC: imei.FormatTAC(p.TAC),
			Attrs: map[string]string{"snr_start": pad6(p.SNRStart), "snr_end": pad6(p.SNREnd), "factory": p.Factory,
				"line": p.Line, "product": p.Product, "market": p.Market}})
		return nil
	})
	return p, err
}

func pad6(v uint32) string {
	s := strconv.FormatUint(uint64(v), 10)
	for len(s) < 6 {
		s = "0" + s
	}
	return s
}

func itoa(v int) string { return strconv.Itoa(v) }

type poolRow struct {
	ID       int64  `db:"id"`
	Name     string `db:"name"`
	TAC      int64  `db:"tac"`
	SNRStart int64  `db:"snr_start"`
	SNREnd   int64  `db:"snr_end"`
	NextSNR  int64  `db:"next_snr"`
	Factory  string `db:"factory"`
	Line     string `db:"line"`
	Product  string `db:"product"`
	Market   string `db:"market"`
}

func (r poolRow) pool() Pool {
	return Pool{ID: r.ID, Name: r.Name, TAC: uint32(r.TAC), SNRStart: uint32(r.SNRStart), SNREnd: uint32(r.SNREnd),
		Factory: r.Factory, Line: r.Line, Product: r.Product, Market: r.Market}
}

// stats is the pool with its high-water mark and free count.
func (r poolRow) stats() PoolStats {
	return PoolStats{Pool: r.pool(), NextSNR: uint32(r.NextSNR), Free: r.SNREnd + 1 - r.NextSNR}
}

const sqlSelectPools = `SELECT id, name, tac, snr_start, snr_end, next_snr, factory, line, product, market FROM pools`

// Pool returns one pool by name with its high-water mark and free count,
// but without the per-state usage counts (Pools has them), or
// pool_not_found. It is one read of the pools table.
func (db *DB) Pool(ctx context.Context, name string) (PoolStats, error) {
	ps, err := db.poolHeads(ctx, " WHERE name = ?", name)
	if err != nil {
		return PoolStats{}, err
	}
	if len(ps) == 0 {
		return PoolStats{}, tacerr.Field(tacerr.PoolNotFound, "pool", "pool %q does not exist", name)
	}
	return ps[0], nil
}

// Pools returns every pool with its utilisation, ordered by TAC and SNR,
// read in one snapshot. The per-state counts are derived without reading
// the BOUND rows (counts.go): the cost grows with the pools, the leases
// and the IMEIs not BOUND, not with the ledger.
func (db *DB) Pools(ctx context.Context) ([]PoolStats, error) {
	return db.countedPools(ctx, func(*Tx) (string, []any, error) {
		return sqlSelectPools + " ORDER BY tac, snr_start", nil, nil
	})
}

// PoolHeads returns every pool with its high-water mark and free count but
// without the per-state usage counts: one read of the pools table, whatever
// the size of the ledger (the metrics scrape uses it).
func (db *DB) PoolHeads(ctx context.Context) ([]PoolStats, error) { return db.poolHeads(ctx, "") }

// PoolsNamed returns the named pools (names that are no pool are left
// out) with their utilisation, ordered like Pools and counted like them.
func (db *DB) PoolsNamed(ctx context.Context, names []string) ([]PoolStats, error) {
	if len(names) == 0 {
		return nil, nil
	}
	return db.countedPools(ctx, func(tx *Tx) (string, []any, error) {
		return tx.in(sqlSelectPools+` WHERE name IN (?) ORDER BY tac, snr_start`, names)
	})
}

// countedPools reads the pools query selects and their usage counts in
// one snapshot.
func (db *DB) countedPools(ctx context.Context, query func(tx *Tx) (string, []any, error)) ([]PoolStats, error) {
	var out []PoolStats
	err := db.readTx(ctx, func(tx *Tx) error {
		q, args, err := query(tx)
		if err != nil {
			return err
		}
		var rows []poolRow
		if err := tx.sel(&rows, q, args...); err != nil {
			return translate(err, "list pools")
		}
		use, err := tx.poolUsage(rows)
		if err != nil {
			return err
		}
		out = make([]PoolStats, len(rows))
		for i, r := range rows {
			u := use[r.ID]
			out[i] = r.stats()
			out[i].Reserved, out[i].Bound, out[i].Voided, out[i].Revoked = u.Reserved, u.Bound, u.Voided, u.Revoked
		}
		return nil
	})
	return out, err
}

// stateCounts are the IMEI rows of a range by state.
type stateCounts struct{ Reserved, Bound, Voided, Revoked int64 }

func (c stateCounts) total() int64 { return c.Reserved + c.Bound + c.Voided + c.Revoked }

// countStates counts the IMEI rows in [lo, hi] (14-digit IMEIs) by state:
// a range read of the IMEI's unique key.
func countStates(q querier, lo, hi int64, what string) (stateCounts, error) {
	type count struct {
		State lifecycle.State `db:"state"`
		N     int64           `db:"n"`
	}
	var cs []count
	if err := q.Select(&cs, q.Rebind(`SELECT state, COUNT(*) AS n FROM imeis WHERE imei14 BETWEEN ? AND ? GROUP BY state`), lo, hi); err != nil {
		return stateCounts{}, translate(err, what)
	}
	var out stateCounts
	for _, c := range cs {
		out.set(c.State, c.N)
	}
	return out, nil
}

// set records n rows in state s.
func (c *stateCounts) set(s lifecycle.State, n int64) {
	switch s {
	case StateReserved:
		c.Reserved = n
	case StateBound:
		c.Bound = n
	case StateVoided:
		c.Voided = n
	case StateRevoked:
		c.Revoked = n
	}
}

func (db *DB) poolHeads(ctx context.Context, where string, args ...any) ([]PoolStats, error) {
	var rows []poolRow
	if err := db.r.SelectContext(ctx, &rows, db.r.Rebind(sqlSelectPools+where+" ORDER BY tac, snr_start"), args...); err != nil {
		return nil, translate(err, "list pools")
	}
	out := make([]PoolStats, len(rows))
	for i, r := range rows {
		out[i] = r.stats()
	}
	return out, nil
}
