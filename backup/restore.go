package backup

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/config"
	"github.com/tacline/tacline/internal/atomicfile"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// RestoreOptions configure Restore.
type RestoreOptions struct {
	From string // the backup set's directory
	// Checkpoints are signed checkpoint notes the operator knows of (from
	// an auditor, the register, an audit export): the restored log must
	// extend each.
	Checkpoints [][]byte
	// LogKey is the trusted verifier key of the audit log; empty: the
	// set's log.pub (then the checkpoints only show the set is
	// self-consistent, unless the target's published file was signed by
	// the same key).
	LogKey string
	// AllowRollback restores a ledger older than a known checkpoint; the
	// server then refuses to start until Acknowledge. It needs
	// audit.published_checkpoint (Restore refuses it otherwise).
	AllowRollback bool
}

// Report is the outcome of Restore.
type Report struct {
	Manifest  *Manifest        `json:"manifest"`
	Target    string           `json:"target"`
	Pools     int              `json:"pools"`
	IMEIs     int64            `json:"imeis"`
	AuditSize int64            `json:"audit_size"`
	Checks    []CheckpointFact `json:"checkpoints"`
	// Rollback: the ledger is older than a known checkpoint (restored only
	// with AllowRollback; the server refuses to start until acknowledged).
	Rollback bool `json:"rollback"`
}

// CheckpointFact is how the restored log stands against one checkpoint.
type CheckpointFact struct {
	Source string `json:"source"`
	Size   int64  `json:"size"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

type known struct {
	source string
	msg    []byte
}

// Restore verifies the backup set in o.From and restores it into the
// database of cfg (which must not hold a ledger), then proves the restored
// ledger (package comment). On SQLite the ledger is restored next to its
// final path and moved there only once proven; on PostgreSQL it is loaded
// into the (empty) target database in one transaction, and if it is then
// refused the database must be dropped (the error says so).
func Restore(ctx context.Context, cfg *config.File, o RestoreOptions) (*Report, error) {
	m, err := ReadManifest(o.From)
	if err != nil {
		return nil, err
	}
	if m.Dialect != string(cfg.Database.Driver) {
		return nil, tacerr.Field(tacerr.InvalidConfig, "database.driver", "the backup set is a %s ledger; this configuration's database is %s", m.Dialect, cfg.Database.Driver)
	}
	if o.AllowRollback && cfg.Audit.PublishedCheckpoint == "" {
		// Decided before anything is restored: the published file is what
		// holds the server back until an operator acknowledges a rollback.
		return nil, tacerr.Field(tacerr.InvalidConfig, "audit.published_checkpoint",
			"is not set: --allow-rollback restores an old ledger only where the server then refuses to start until `tacline restore ack` records why, and that takes the published checkpoint file; set audit.published_checkpoint (docs/operations.md)")
	}
	rep := &Report{Manifest: m}
	ks, cps, v, err := knownCheckpoints(cfg, o)
	if err != nil {
		return nil, err
	}

	// Restore next to the target (SQLite) or into it (PostgreSQL).
	target := cfg.Database
	final := ""
	if target.Driver == store.SQLite {
		final = store.SQLitePath(target.DSN)
		if err := store.NoSQLiteLedger(final); err != nil {
			return nil, err
		}
		target.DSN = final + ".restoring"
		removeSQLite(target.DSN)
		rep.Target = final
	} else {
		rep.Target = "the PostgreSQL database of database.dsn"
	}
	proven := false
	defer func() {
		if !proven && final != "" {
			removeSQLite(target.DSN)
		}
	}()
	if err := store.Restore(ctx, target, filepath.Join(o.From, m.Ledger)); err != nil {
		return nil, err
	}
	refuse := func(err error) (*Report, error) {
		if final == "" {
			e, _ := tacerr.As(err)
			return rep, tacerr.New(e.Code, "%s. The restored ledger is in the target PostgreSQL database, unproven: drop that database (dropdb) before another attempt", e.Message)
		}
		return rep, err
	}
	if err := prove(ctx, target, !cfg.Audit.Disabled, cps, ks, rep); err != nil {
		return refuse(err)
	}
	if rep.Rollback && !o.AllowRollback {
		return refuse(tacerr.New(tacerr.LedgerInvariant, "the backup is older than a checkpoint already signed (%s): a server provisioning from it would give IMEIs already on devices to other devices. Use a newer backup; or, knowing why, restore with --allow-rollback and acknowledge with `tacline restore ack` (docs/operations.md)",
			rolledBack(rep)))
	}
	// Make the newest known checkpoint the published one, so that a
	// rollback stays visible to the server until acknowledged.
	if p := cfg.Audit.PublishedCheckpoint; p != "" && len(cps) > 0 {
		newest := 0
		for i, c := range cps {
			if c.Size > cps[newest].Size {
				newest = i
			}
		}
		cur := int64(-1)
		if b, _ := audit.ReadPublished(p); b != nil {
			if c, err := audit.OpenCheckpoint(b, v); err == nil {
				cur = c.Size
			}
		}
		if cps[newest].Size > cur {
			if err := audit.WritePublished(p, ks[newest].msg); err != nil {
				return refuse(err)
			}
		}
	}
	if final != "" {
		if err := os.Rename(target.DSN, final); err != nil {
			return nil, tacerr.Wrap(tacerr.Unavailable, err, "move the restored ledger into place")
		}
		// The rename is durable only once the directory is: a power cut
		// after an unsynced rename could leave the ledger under its
		// .restoring name, which the next restore deletes.
		if err := atomicfile.SyncDir(filepath.Dir(final)); err != nil {
			return nil, tacerr.Wrap(tacerr.Unavailable, err, "make the restored ledger's move durable (fsync of %s)", filepath.Dir(final))
		}
	}
	proven = true
	return rep, nil
}

// knownCheckpoints gathers every checkpoint known (the set's, if o.From is
// set; the published file; the operator's) and verifies each with the log
// key (o.LogKey, else the set's log.pub).
func knownCheckpoints(cfg *config.File, o RestoreOptions) ([]known, []audit.Checkpoint, *audit.NoteVerifier, error) {
	var ks []known
	if o.From != "" {
		for _, name := range []string{CheckpointFile, PublishedFile} {
			if b, err := os.ReadFile(filepath.Join(o.From, name)); err == nil {
				ks = append(ks, known{"backup set " + name, b})
			}
		}
	}
	if p := cfg.Audit.PublishedCheckpoint; p != "" {
		b, err := audit.ReadPublished(p)
		if err != nil {
			return nil, nil, nil, err
		}
		if b != nil {
			ks = append(ks, known{"published file " + p, b})
		}
	}
	for i, b := range o.Checkpoints {
		ks = append(ks, known{"operator checkpoint " + itoa(int64(i+1)), b})
	}
	key := strings.TrimSpace(o.LogKey)
	if key == "" && o.From != "" {
		b, _ := os.ReadFile(filepath.Join(o.From, LogKeyFile))
		key = strings.TrimSpace(string(b))
	}
	if len(ks) == 0 {
		return nil, nil, nil, nil
	}
	if key == "" {
		return nil, nil, nil, tacerr.Field(tacerr.InvalidInput, "log-key", "checkpoints are known but no log key: give the audit log's verifier key (tacline audit key prints it)")
	}
	v, err := audit.ParseVerifierKey(key)
	if err != nil {
		return nil, nil, nil, tacerr.Wrap(tacerr.InvalidInput, err, "audit log key")
	}
	var cps []audit.Checkpoint
	for _, k := range ks {
		c, err := audit.OpenCheckpoint(k.msg, v)
		if err != nil {
			return nil, nil, nil, tacerr.Wrap(tacerr.LedgerInvariant, err, "%s", k.source)
		}
		cps = append(cps, c)
	}
	return ks, cps, v, nil
}

// Verify proves the ledger already in cfg's database, as Restore proves a
// restored one: for a PostgreSQL database restored by the database's own
// means (point-in-time recovery from a base backup and archived WAL), before
// a server is started on it. It fails (ledger_invariant) when the ledger is
// older than a known checkpoint, forked from one, or fails ledger check.
func Verify(ctx context.Context, cfg *config.File, o RestoreOptions) (*Report, error) {
	ks, cps, _, err := knownCheckpoints(cfg, o)
	if err != nil {
		return nil, err
	}
	rep := &Report{Target: "the database of database.dsn"}
	if err := prove(ctx, cfg.Database, !cfg.Audit.Disabled, cps, ks, rep); err != nil {
		return rep, err
	}
	if rep.Rollback {
		return rep, tacerr.New(tacerr.LedgerInvariant, "the ledger is older than a checkpoint already signed (%s): do not provision from it (docs/operations.md)", rolledBack(rep))
	}
	return rep, nil
}

// prove opens the restored ledger and checks its invariants, every audit
// leaf against the log's head, its stations, role certificates and issuers
// against the log's identity events (identities: where the configuration
// has a log) and its audit log against every known checkpoint.
func prove(ctx context.Context, cfg store.Config, identities bool, cps []audit.Checkpoint, ks []known, rep *Report) error {
	db, err := store.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	chk, err := db.Check(ctx)
	if err != nil {
		return err
	}
	rep.Pools, rep.IMEIs = chk.Pools, chk.IMEIs
	if !chk.OK() {
		return tacerr.New(tacerr.LedgerInvariant, "the restored ledger fails ledger check: %s", chk.Violations[0])
	}
	// Every leaf, as stored, against the head's root: the stored hashes
	// that the checks below and the checkpoints' proofs read can be left
	// as they were while a leaf's data is changed.
	if _, err := audit.VerifyLeaves(ctx, db); err != nil {
		return err
	}
	if identities {
		ids, err := audit.CheckIdentities(ctx, db)
		if err != nil {
			return err
		}
		if !ids.OK() {
			return tacerr.New(tacerr.LedgerInvariant, "the restored ledger's identities disagree with its audit log (%d findings; the backup was changed after it was made, or the tables behind tacline's back): %s",
				len(ids.Violations), ids.Violations[0])
		}
	}
	size, _, err := audit.Head(ctx, db)
	if err != nil {
		return err
	}
	rep.AuditSize = size
	for i, c := range cps {
		st, err := audit.StandAgainst(ctx, db, c)
		if err != nil {
			return err
		}
		rep.Checks = append(rep.Checks, CheckpointFact{Source: ks[i].source, Size: c.Size, OK: st.OK(), Detail: st.String()})
		if st.Forked {
			return tacerr.New(tacerr.LedgerInvariant, "%s: %s", ks[i].source, st)
		}
		if st.Older {
			rep.Rollback = true
		}
	}
	return nil
}

func rolledBack(rep *Report) string {
	var parts []string
	for _, c := range rep.Checks {
		if !c.OK {
			parts = append(parts, c.Source+" has size "+itoa(c.Size))
		}
	}
	return "the restored audit log has " + itoa(rep.AuditSize) + " events; " + strings.Join(parts, ", ")
}

func removeSQLite(path string) {
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		os.Remove(p)
	}
}

// Acknowledge records that an operator accepts serving a ledger older than
// (or forked from) the published checkpoint: an audited ledger event with
// the reason and both checkpoints' facts, then the published file moved
// aside (audit.SupersedePublished), so that the server starts and the next
// checkpoint it signs becomes the published one. It refuses when there is
// nothing to acknowledge. logKey, the audit log's verifier key, verifies
// the published file; empty: the key of the ledger's newest checkpoint
// (a ledger rolled back to before its log's first checkpoint has none,
// and needs logKey).
func Acknowledge(ctx context.Context, db *store.DB, cfg *config.File, reason, actor, logKey string) (string, error) {
	if strings.TrimSpace(reason) == "" {
		return "", tacerr.Field(tacerr.InvalidInput, "reason", "is required: say why this ledger may be served and what was done about the IMEIs issued since the backup")
	}
	p := cfg.Audit.PublishedCheckpoint
	if p == "" {
		return "", tacerr.Field(tacerr.InvalidConfig, "audit.published_checkpoint", "is not set: there is no published checkpoint to acknowledge")
	}
	msg, err := audit.ReadPublished(p)
	if err != nil {
		return "", err
	}
	if msg == nil {
		return "", tacerr.New(tacerr.InvalidState, "%s does not exist: nothing to acknowledge", p)
	}
	key := strings.TrimSpace(logKey)
	if key == "" {
		latest, err := audit.LatestCheckpoint(ctx, db)
		if tacerr.Is(err, tacerr.NotFound) {
			return "", tacerr.Field(tacerr.InvalidInput, "log-key", "the ledger has no signed checkpoint whose key could verify %s (it is older than its log's first checkpoint): give the audit log's verifier key (tacline audit key prints it)", p)
		}
		if err != nil {
			return "", err
		}
		key = latest.VerifierKey
	}
	v, err := audit.ParseVerifierKey(key)
	if err != nil {
		return "", tacerr.Wrap(tacerr.InvalidInput, err, "audit log key")
	}
	c, err := audit.OpenCheckpoint(msg, v)
	if err != nil {
		return "", tacerr.Wrap(tacerr.LedgerInvariant, err, "published checkpoint %s", p)
	}
	st, err := audit.StandAgainst(ctx, db, c)
	if err != nil {
		return "", err
	}
	if st.OK() {
		return "", tacerr.New(tacerr.InvalidState, "nothing to acknowledge: %s", st)
	}
	now := time.Now()
	err = db.InTx(ctx, func(tx *store.Tx) error {
		tx.Emit(store.Event{Type: store.EventRollbackAcknowledged, Actor: actor, Reason: reason, Attrs: map[string]string{
			"published_size": itoa(c.Size), "published_root": c.Root.String(),
			"head_size": itoa(st.HeadSize), "head_root": st.HeadRoot.String(), "forked": boolString(st.Forked),
		}})
		return nil
	})
	if err != nil {
		return "", err
	}
	return audit.SupersedePublished(p, now)
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
