// Package auditbench measures the audit log: filling it, the cost of an
// audited one-event transaction against a plain one, checkpoints, export
// and offline verification.
package auditbench

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// BenchOptions configure Bench.
type BenchOptions struct {
	Events int    // events in the log (default 100,000)
	Batch  int    // events per ledger transaction while filling (default 1,000)
	Single int    // events appended one per transaction, as provisioning does (default 2,000)
	Dir    string // where the export file goes
}

// BenchResult is what `tacline bench audit --json` prints.
type BenchResult struct {
	DB                 string  `json:"db"`
	Events             int64   `json:"events"`
	Batch              int     `json:"batch"`
	FillSeconds        float64 `json:"fill_seconds"`
	FillPerSecond      float64 `json:"fill_events_per_second"`
	SinglePerSecond    float64 `json:"single_event_tx_per_second"`
	BaselinePerSecond  float64 `json:"baseline_one_row_tx_per_second"`
	OverheadPercent    float64 `json:"single_tx_overhead_percent"`
	CheckpointSeconds  float64 `json:"checkpoint_seconds"`
	ExportSeconds      float64 `json:"export_seconds"`
	ExportBytes        int64   `json:"export_bytes"`
	VerifySeconds      float64 `json:"verify_seconds"`
	ExportVerifySecond float64 `json:"export_plus_verify_seconds"`
	GuessedAppends     int64   `json:"guessed_appends"`
	LockedAppends      int64   `json:"locked_appends"`
	Valid              bool    `json:"valid"`
}

// Bench fills db's audit log with o.Events synthetic events, measures
// one-event transactions with and without the log, signs a checkpoint with
// a software ECDSA key, exports the whole log to a file in o.Dir and
// verifies it offline. db must be a fresh ledger; l must not be attached.
func Bench(ctx context.Context, db *store.DB, o BenchOptions) (BenchResult, error) {
	if o.Events <= 0 {
		o.Events = 100000
	}
	if o.Batch <= 0 {
		o.Batch = 1000
	}
	if o.Single <= 0 {
		o.Single = 2000
	}
	res := BenchResult{DB: string(db.Dialect()), Batch: o.Batch}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return res, err
	}
	l, err := audit.New(db, audit.Config{Origin: "bench.tacline/audit", KeyLabel: "bench"}, key)
	if err != nil {
		return res, err
	}
	// baseline: transactions that write one row of a scratch table of this
	// throwaway ledger; then the same with the row's event in the audit log
	if err := db.CreateScratch(ctx); err != nil {
		return res, err
	}
	// the two kinds alternate in rounds so that drift (other load, the
	// database growing) affects both alike; the audited ones call Append
	// exactly as the sink does, in the same transaction
	single := func(i int, event bool) error {
		return db.InTx(ctx, func(tx *store.Tx) error {
			if err := tx.WriteScratch(int64(i), 0, benchPayload); err != nil {
				return err
			}
			if event {
				return l.Append(tx, []store.Event{benchEvent(i)})
			}
			return nil
		})
	}
	const rounds = 10
	var plain, audited time.Duration
	n := 0
	for r := range rounds {
		per := o.Single / rounds
		if r < o.Single%rounds {
			per++
		}
		for _, event := range []bool{false, true} {
			start := time.Now()
			for j := range per {
				i := n + j
				if !event {
					i = -1 - i
				}
				if err := single(i, event); err != nil {
					return res, err
				}
			}
			if event {
				audited += time.Since(start)
			} else {
				plain += time.Since(start)
			}
		}
		n += per
	}
	res.BaselinePerSecond = float64(o.Single) / plain.Seconds()
	res.SinglePerSecond = float64(o.Single) / audited.Seconds()
	res.OverheadPercent = 100 * (1 - res.SinglePerSecond/res.BaselinePerSecond)
	res.GuessedAppends, res.LockedAppends = l.AppendStats()
	l.Attach()

	start := time.Now()
	for i := o.Single; i < o.Events; i += o.Batch {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if err := db.InTx(ctx, func(tx *store.Tx) error {
			for j := i; j < min(i+o.Batch, o.Events); j++ {
				tx.Emit(benchEvent(j))
			}
			return nil
		}); err != nil {
			return res, err
		}
	}
	res.FillSeconds = time.Since(start).Seconds()
	size, _, err := audit.Head(ctx, db)
	if err != nil {
		return res, err
	}
	res.Events = size
	res.FillPerSecond = float64(size-int64(o.Single)) / res.FillSeconds

	start = time.Now()
	if _, err := l.Checkpoint(ctx); err != nil {
		return res, err
	}
	res.CheckpointSeconds = time.Since(start).Seconds()

	path := filepath.Join(o.Dir, "bench-audit-export.tar")
	start = time.Now()
	f, err := os.Create(path)
	if err != nil {
		return res, tacerr.Wrap(tacerr.Unavailable, err, "create %s", path)
	}
	defer os.Remove(path)
	bw := bufio.NewWriterSize(f, 1<<20)
	st, err := audit.Export(ctx, db, bw, audit.ExportOptions{})
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return res, err
	}
	res.ExportSeconds = time.Since(start).Seconds()
	res.ExportBytes = st.Bytes

	start = time.Now()
	f, err = os.Open(path)
	if err != nil {
		return res, err
	}
	defer f.Close()
	vr := audit.Verify(bufio.NewReaderSize(f, 1<<20), audit.VerifyOptions{LogKey: l.Verifier().Key()})
	res.VerifySeconds = time.Since(start).Seconds()
	res.ExportVerifySecond = res.ExportSeconds + res.VerifySeconds
	res.Valid = vr.Valid
	if !vr.Valid {
		return res, tacerr.New(tacerr.Internal, "the benchmark's own export does not verify: %s", vr.Reason)
	}
	return res, nil
}

var benchPayload = strings.Repeat("x", 200)

func benchEvent(i int) store.Event {
	m, _ := imei.New(35209900, uint32(i%imei.SNRsPerTAC)) // always valid: TAC of 8 digits, SNR below 10^6
	return store.Event{
		Type:         store.EventIMEIBound,
		Time:         time.UnixMicro(1_790_000_000_000_000 + int64(i)).UTC(),
		Actor:        "station-01",
		RequestID:    fmt.Sprintf("req-%010d", i),
		Pool:         "bench",
		TAC:          "35209900",
		IMEIs:        []string{m.String()},
		DeviceSerial: fmt.Sprintf("DEV%010d", i),
		CertSerial:   fmt.Sprintf("%032x", i),
	}
}
