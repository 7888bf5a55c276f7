package test

import (
	"context"
	"encoding/json"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/tacline/tacline/store/pgadmin"
	"github.com/tacline/tacline/store/storetest"
)

// benchJSON runs `tacline bench ARGS --json`, which must succeed, and
// decodes the one JSON object it prints into out.
func benchJSON(t *testing.T, out any, args ...string) result {
	t.Helper()
	r := tacline(t, 5*time.Minute, append(append([]string{"bench"}, args...), "--json")...)
	if r.code != 0 {
		t.Fatalf("tacline bench %v exited %d\nstdout:\n%s\nstderr:\n%s", args, r.code, r.stdout, r.stderr)
	}
	if err := json.Unmarshal([]byte(r.stdout), out); err != nil {
		t.Fatalf("tacline bench %v: not one JSON object: %v\n%s", args, err, r.stdout)
	}
	return r
}

// TestBenchProvisionPrefill runs `tacline bench provision --prefill 2000`
// on both databases: the bulk-loaded ledger passes `ledger check` and the
// offline audit verification, and provisioning over mutual TLS works on it
// afterwards (correctness only; the figures go in docs/benchmarks.md).
func TestBenchProvisionPrefill(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "bench")
			var res struct {
				Prefill     int     `json:"prefill"`
				Devices     int     `json:"devices"`
				Errors      int     `json:"errors"`
				LedgerOK    bool    `json:"ledger_ok"`
				AuditOK     *bool   `json:"audit_ok"`
				FillSeconds float64 `json:"prefill_seconds"`
				Ratio       float64 `json:"prefilled_ratio"`
				LedgerBytes int64   `json:"ledger_bytes"`
				EmptyPerSec float64 `json:"empty_devices_per_second"`
				Syscalls    float64 `json:"server_write_syscalls_per_device"`
				StorageKiB  float64 `json:"server_storage_written_kib_per_device"`
				PeakRSSMiB  float64 `json:"server_peak_rss_mib"`
				QueueMs     float64 `json:"ledger_queue_ms"`
				BatchMs     float64 `json:"ledger_batch_ms"`
				Members     float64 `json:"ledger_batch_members"`
				SignMs      float64 `json:"hsm_sign_ms"`
				DBCPUus     float64 `json:"db_cpu_us_per_device"`
				WALKiB      float64 `json:"db_wal_kib_per_device"`
				BlocksHit   float64 `json:"db_blocks_hit_per_device"`
				Empty       *struct {
					Devices  int  `json:"devices"`
					LedgerOK bool `json:"ledger_ok"`
				} `json:"empty"`
				PrefilledPerSec float64 `json:"prefilled_devices_per_second"`
				Rounds          []struct {
					EmptyFirst bool    `json:"empty_first"`
					Empty      float64 `json:"empty_devices_per_second"`
					Prefilled  float64 `json:"prefilled_devices_per_second"`
					Ratio      float64 `json:"ratio"`
				} `json:"prefill_rounds"`
			}
			args := []string{"provision", "--db", db, "--prefill", "2000", "--duration", "1s", "--stations", "4", "--dir", dir}
			if db == "postgres" {
				args = append(args, "--keep")
			}
			r := benchJSON(t, &res, args...)
			if res.Prefill != 2000 || res.FillSeconds <= 0 || res.LedgerBytes <= 0 {
				t.Errorf("prefill %d in %v s, ledger %d bytes; want 2000 devices, a fill time and a size", res.Prefill, res.FillSeconds, res.LedgerBytes)
			}
			if !res.LedgerOK || res.AuditOK == nil || !*res.AuditOK {
				t.Errorf("ledger_ok %v, audit_ok %v: the prefilled ledger must pass both checks\nstderr:\n%s", res.LedgerOK, res.AuditOK, r.stderr)
			}
			if res.Devices == 0 || res.Errors != 0 {
				t.Errorf("after the prefill %d devices provisioned with %d errors, want some and none", res.Devices, res.Errors)
			}
			if res.Empty == nil || res.Empty.Devices == 0 || !res.Empty.LedgerOK || res.EmptyPerSec <= 0 || res.Ratio <= 0 {
				t.Errorf("the empty ledger's run is missing or failed: %+v, ratio %v", res.Empty, res.Ratio)
			}
			// --rounds 2 (the default): each ledger measured twice, the
			// empty one first, then the prefilled one first; the ratio is
			// the mean rate prefilled over the mean rate empty.
			if len(res.Rounds) != 2 || !res.Rounds[0].EmptyFirst || res.Rounds[1].EmptyFirst {
				t.Errorf("prefill_rounds %+v, want two rounds, the empty ledger first in the first only", res.Rounds)
			} else {
				sumE, sumP := res.Rounds[0].Empty+res.Rounds[1].Empty, res.Rounds[0].Prefilled+res.Rounds[1].Prefilled
				if sumE <= 0 || sumP <= 0 || math.Abs(res.Ratio-sumP/sumE) > 1e-9 || math.Abs(res.EmptyPerSec-sumE/2) > 1e-9 || math.Abs(res.PrefilledPerSec-sumP/2) > 1e-9 {
					t.Errorf("prefilled_ratio %v, empty %v, prefilled %v: want the means of the rounds %+v", res.Ratio, res.EmptyPerSec, res.PrefilledPerSec, res.Rounds)
				}
			}
			if res.PeakRSSMiB <= 0 || res.Syscalls <= 0 {
				t.Errorf("server_peak_rss_mib %v, server_write_syscalls_per_device %v: the server's counters are missing", res.PeakRSSMiB, res.Syscalls)
			}
			// Where the time went (the servers' histograms over the measured
			// phase): a batch carries at least one write and takes time, and
			// every device was signed.
			if res.QueueMs <= 0 || res.BatchMs <= 0 || res.Members < 1 || res.SignMs <= 0 {
				t.Errorf("ledger_queue_ms %v, ledger_batch_ms %v, ledger_batch_members %v, hsm_sign_ms %v: the request's breakdown is missing",
					res.QueueMs, res.BatchMs, res.Members, res.SignMs)
			}
			if db == "postgres" {
				// What the devices cost the PostgreSQL server: its backends'
				// CPU, the WAL they wrote (every device is durable rows) and
				// the shared buffers they touched.
				if res.DBCPUus <= 0 || res.WALKiB <= 0 || res.BlocksHit <= 0 {
					t.Errorf("db_cpu_us_per_device %v, db_wal_kib_per_device %v, db_blocks_hit_per_device %v: the database server's counters are missing",
						res.DBCPUus, res.WALKiB, res.BlocksHit)
				}
				// --keep: the prefilled database stays for --remeasure,
				// which measures it again (it still passes both checks with
				// the first run's devices on it); then it is dropped.
				var kept struct {
					DSN string `json:"kept_dsn"`
				}
				if err := json.Unmarshal([]byte(r.stdout), &kept); err != nil || kept.DSN == "" {
					t.Fatalf("--keep: no kept_dsn in %s (%v)", r.stdout, err)
				}
				t.Cleanup(func() {
					if err := pgadmin.DropDatabase(context.Background(), storetest.AdminDSN(), kept.DSN); err != nil {
						t.Errorf("drop the kept database: %v", err)
					}
				})
				res.AuditOK = nil
				benchJSON(t, &res, "provision", "--db", db, "--prefill", "2000", "--remeasure", "--duration", "1s", "--stations", "4", "--dir", dir)
				if !res.LedgerOK || res.AuditOK == nil || !*res.AuditOK || res.Devices == 0 || res.Errors != 0 {
					t.Errorf("--remeasure of the kept database: ledger_ok %v, audit_ok %v, %d devices, %d errors", res.LedgerOK, res.AuditOK, res.Devices, res.Errors)
				}
				return
			}
			if res.StorageKiB <= 0 {
				t.Errorf("server_storage_written_kib_per_device %v on SQLite: the ledger's writes to storage are not counted", res.StorageKiB)
			}
			// --remeasure: the prefilled ledger left in dir, measured again
			// (it still passes both checks with the first run's devices on it).
			res.AuditOK = nil
			benchJSON(t, &res, "provision", "--prefill", "2000", "--remeasure", "--duration", "1s", "--stations", "4", "--dir", dir)
			if !res.LedgerOK || res.AuditOK == nil || !*res.AuditOK || res.Devices == 0 || res.Errors != 0 {
				t.Errorf("--remeasure: ledger_ok %v, audit_ok %v, %d devices, %d errors", res.LedgerOK, res.AuditOK, res.Devices, res.Errors)
			}
		})
	}
}
