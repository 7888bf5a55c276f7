package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/catalog"
	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/internal/progress"
	"github.com/tacline/tacline/lifecycle"
	"github.com/tacline/tacline/policy"
	"github.com/tacline/tacline/provisioner/issuance"
	"github.com/tacline/tacline/register"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/pgadmin"
	"github.com/tacline/tacline/tacerr"
)

// Prefill constants: the synthetic devices take whole TACs of their own
// (PrefillFirstTAC onwards, one pool "prefill-NNN" of every SNR per TAC),
// two IMEIs per device like the development TACs, in batches of
// prefillBatch devices (one transaction each), which divides a pool.
const (
	PrefillFirstTAC  = devenv.FirstTAC + 1000
	prefillPerDevice = 2
	prefillBatch     = 2000
	prefillPerPool   = imei.SNRsPerTAC / prefillPerDevice
	prefillActor     = "bench-prefill"
)

// PrefillResult says what Prefill wrote and how fast.
type PrefillResult struct {
	Devices          int     `json:"devices"`
	Seconds          float64 `json:"seconds"`
	DevicesPerSecond float64 `json:"devices_per_second"`
	Pools            int     `json:"pools"`
	AuditSize        int64   `json:"audit_size"`
	LedgerBytes      int64   `json:"ledger_bytes"`
}

// Prefill fills the environment's new ledger with n provisioned devices
// through store's bulk loader: TACs and pools of their own, a bench-only
// device issuer (a throwaway software key, its certificate self-signed,
// recorded inactive and then revoked, so no server issues under it or
// trusts it) that signs their certificates, and for every device the rows
// provisioning writes, its two audit events and its register outbox rows
// (delivered). The server must not be running. out, if set, gets a
// line every few seconds (devices/s, ETA).
func Prefill(ctx context.Context, env *devenv.Env, n int, out io.Writer) (*PrefillResult, error) {
	db, err := env.OpenLedger(ctx)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	loader, err := db.NewBulkLoader(ctx)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	pools, err := prefillPools(ctx, db, n, start)
	if err != nil {
		return nil, err
	}
	is, keyID, err := prefillIssuer(ctx, db, env, start)
	if err != nil {
		return nil, err
	}
	bulk, err := audit.NewBulk(ctx, db)
	if err != nil {
		return nil, err
	}
	names := func(uint32) (string, string, bool, error) { return devenv.Manufacturer, "TL-Phone 1", true, nil }
	g := &prefillGen{is: is, keyID: keyID, stations: env.Stations, pools: pools}

	// Workers make batches (keys, certificates: the CPU) ahead of the
	// writer, which computes the audit rows in order and writes.
	batches := (n + prefillBatch - 1) / prefillBatch
	workers := max(1, runtime.GOMAXPROCS(0))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	slots := make([]chan batchOrErr, batches)
	for i := range slots {
		slots[i] = make(chan batchOrErr, 1)
	}
	next := make(chan int)
	go func() {
		defer close(next)
		for i := 0; i < batches; i++ {
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	sem := make(chan struct{}, workers+2) // batches made ahead of the writer
	for w := 0; w < workers; w++ {
		go func() {
			for i := range next {
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					return
				}
				b, err := g.batch(i, min(prefillBatch, n-i*prefillBatch))
				slots[i] <- batchOrErr{b, err}
			}
		}()
	}
	last := time.Now()
	for i := 0; i < batches; i++ {
		var r batchOrErr
		select {
		case r = <-slots[i]:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		<-sem
		if r.err != nil {
			return nil, r.err
		}
		events := store.BulkEvents(r.b)
		if r.b.Audit, err = bulk.Append(events); err != nil {
			return nil, err
		}
		if r.b.Outbox, err = register.Rows(events, names); err != nil {
			return nil, err
		}
		if err := loader.Load(ctx, r.b); err != nil {
			return nil, fmt.Errorf("prefill batch %d of %d: %w", i+1, batches, err)
		}
		if out != nil && (time.Since(last) > 3*time.Second || i == batches-1) {
			last = time.Now()
			c := progress.Counter{Task: "prefill", Unit: "devices", Total: int64(n), Also: progress.Rate{Unit: "rows", Per: prefillRowsPerDevice}}
			fmt.Fprintln(out, c.Line(int64(min(n, (i+1)*prefillBatch)), time.Since(start)))
		}
	}
	if err := loader.Finish(ctx); err != nil {
		return nil, err
	}
	res := &PrefillResult{Devices: n, Pools: len(pools), Seconds: time.Since(start).Seconds(), AuditSize: bulk.Head().Size}
	res.DevicesPerSecond = float64(n) / res.Seconds
	return res, nil
}

// prefillRowsPerDevice counts the rows of one prefilled device (for the
// progress line): reservation, 2 IMEIs, intent, claim, key, certificate,
// device, 2 audit leaves, ~4 stored hashes, 4 audit IMEI rows, 2 outbox rows.
const prefillRowsPerDevice = 19

type batchOrErr struct {
	b   *store.BulkBatch
	err error
}

// prefillPools adds the TACs and pools that n devices need (normal ledger
// changes, with their events).
func prefillPools(ctx context.Context, db *store.DB, n int, now time.Time) ([]store.Pool, error) {
	k := (n + prefillPerPool - 1) / prefillPerPool
	tacs := make([]catalog.TAC, k)
	for i := range tacs {
		tacs[i] = devenv.DevTAC(uint32(PrefillFirstTAC+i), fmt.Sprintf("TLP1-PF%03d", i), now)
	}
	if err := db.AddTACs(ctx, tacs, prefillActor); err != nil {
		return nil, err
	}
	pools := make([]store.Pool, k)
	for i := range pools {
		p, err := db.CreatePool(ctx, store.Pool{Name: fmt.Sprintf("prefill-%03d", i+1), TAC: uint32(PrefillFirstTAC + i), SNRStart: 0, SNREnd: imei.SNRsPerTAC - 1,
			Factory: "prefill", Line: "prefill", Product: "TL-Phone-1", Market: "DE"}, prefillActor)
		if err != nil {
			return nil, err
		}
		pools[i] = p
	}
	return pools, nil
}

// prefillIssuer makes the bench-only device issuer: a software P-256 key
// that never touches the HSM and a self-signed CA certificate, recorded in
// the ledger inactive and revoked (so no server issues under it and no
// check trusts what it signed).
func prefillIssuer(ctx context.Context, db *store.DB, env *devenv.Env, now time.Time) (*issuance.Issuer, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", err
	}
	skid, err := policy.KeyID(key.Public())
	if err != nil {
		return nil, "", err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{Organization: []string{devenv.Manufacturer},
		CommonName: "tacline bench prefill issuer (synthetic devices, not a CA of the manufacturer)"},
		NotBefore: now.Add(-time.Hour), NotAfter: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, SubjectKeyId: skid}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, "", err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, "", err
	}
	is, err := issuance.New(issuance.Config{IssuerCert: cert, Signer: key, Profile: env.Config.Profile, Lint: env.Config.Lint})
	if err != nil {
		return nil, "", err
	}
	keyID := hex.EncodeToString(skid)
	rec := store.IssuerRecord{KeyID: keyID, Label: "bench-prefill-" + keyID[:12], Kind: store.IssuerDevice, Curve: "P-256",
		CertPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
	if err := db.AddIssuer(ctx, rec, prefillActor); err != nil {
		return nil, "", err
	}
	if err := db.RevokeIssuer(ctx, keyID, lifecycle.RevokeCessationOfOperation, prefillActor); err != nil {
		return nil, "", err
	}
	return is, keyID, nil
}

// prefillGen makes the synthetic devices of a batch.
type prefillGen struct {
	is       *issuance.Issuer
	keyID    string
	stations []string
	pools    []store.Pool
}

// batch makes batch i (count devices): pool i*prefillBatch/prefillPerPool,
// SNRs continuing the batches before it.
func (g *prefillGen) batch(i, count int) (*store.BulkBatch, error) {
	first := i * prefillBatch
	p := g.pools[first/prefillPerPool]
	b := &store.BulkBatch{PoolID: p.ID, Pool: p.Name, TAC: p.TAC, Devices: make([]store.BulkDevice, count)}
	snr := uint32(first%prefillPerPool) * prefillPerDevice
	now := time.Now().UTC()
	notBefore := now.Truncate(time.Second)
	for j := range b.Devices {
		k := first + j
		station := g.stations[k%len(g.stations)]
		serial := fmt.Sprintf("%s-prefill-%08d", station, k)
		d := &b.Devices[j]
		d.Station, d.Serial, d.RequestID = station, serial, "req-"+serial
		rh := sha256.Sum256([]byte(d.RequestID))
		d.RequestHash = rh[:]
		for s := 0; s < prefillPerDevice; s++ {
			m, err := imei.New(p.TAC, snr)
			if err != nil {
				return nil, err
			}
			d.IMEIs = append(d.IMEIs, m)
			snr++
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		if d.PublicKey, err = x509.MarshalPKIXPublicKey(key.Public()); err != nil {
			return nil, err
		}
		sh := sha256.Sum256(d.PublicKey)
		d.SPKIHash = sh[:]
		serialNo, err := policy.NewSerial(nil)
		if err != nil {
			return nil, err
		}
		der, tbs, err := g.is.SignSynthetic(issuance.Request{DeviceSerial: serial, Manufacturer: devenv.Manufacturer, Model: "TL-Phone 1",
			IMEIs: d.IMEIs, PublicKey: key.Public(), Serial: serialNo, NotBefore: notBefore})
		if err != nil {
			return nil, err
		}
		th := sha256.Sum256(tbs)
		d.DER, d.TBSHash = der, th[:]
		d.CertSerial, d.IssuerKeyID, d.NotBefore = hex.EncodeToString(serialNo.Bytes()), g.keyID, notBefore
		d.ReservedAt, d.BoundAt = now, now.Add(8*time.Millisecond)
	}
	return b, nil
}

// provisionPrefilled is Provision with o.Prefill: the prefilled ledger is
// filled first, then the empty one and the prefilled one are measured,
// o.PrefillRounds times each in alternating order (measureRounds), in the
// same command; the ratio compares their mean rates.
func provisionPrefilled(ctx context.Context, o ProvisionOptions, logw io.Writer) (*ProvisionResult, error) {
	if o.NoAudit {
		return nil, tacerr.Field(tacerr.InvalidInput, "prefill", "a prefilled ledger holds the audit log of its devices: --prefill cannot run with --no-audit")
	}
	var envP *devenv.Env
	pf := &PrefillResult{Devices: o.Prefill}
	if o.Keep && o.Driver != store.Postgres {
		return nil, tacerr.Field(tacerr.InvalidInput, "keep", "keeps a PostgreSQL prefilled database; a SQLite prefilled ledger stays in --dir anyway")
	}
	if o.Remeasure {
		var err error
		if envP, err = devenv.Reopen(filepath.Join(o.Dir, "prefilled")); err != nil {
			return nil, err
		}
		if envP.Config.Database.Driver != o.Driver {
			return nil, tacerr.Field(tacerr.InvalidInput, "remeasure", "the prefilled ledger in %s is %s, not %s", filepath.Join(o.Dir, "prefilled"), envP.Config.Database.Driver, o.Driver)
		}
	} else {
		env, dropP, err := setupEnv(ctx, devenv.Options{Dir: filepath.Join(o.Dir, "prefilled"), Stations: o.Stations, Driver: o.Driver, Log: logw}, o.AdminDSN)
		defer func() {
			if !o.Keep || err != nil {
				dropP()
			} else if env != nil {
				// Kept for --remeasure: no later sweep of orphaned scratch
				// databases may take it (pgadmin).
				if kerr := pgadmin.Keep(context.Background(), o.AdminDSN, env.Config.Database.DSN); kerr != nil {
					fmt.Fprintf(logw, "could not mark the kept database as kept (%v): a later bench's sweep of orphaned databases may drop it\n", kerr)
				}
			}
		}()
		if err != nil {
			return nil, err
		}
		envP = env
		if pf, err = Prefill(ctx, envP, o.Prefill, o.Progress); err != nil {
			return nil, err
		}
	}
	size, err := store.Size(ctx, envP.Config.Database)
	if err != nil {
		return nil, err
	}
	envE, dropE, err := setupEnv(ctx, devenv.Options{Dir: filepath.Join(o.Dir, "empty"), Stations: o.Stations, Driver: o.Driver, Log: logw}, o.AdminDSN)
	defer dropE()
	if err != nil {
		return nil, err
	}
	res, empty, rounds, err := measureRounds(ctx, o, envE, envP)
	if err != nil {
		return nil, err
	}
	res.Prefill, res.PrefillSeconds, res.PrefillPerSecond, res.LedgerBytes = pf.Devices, pf.Seconds, pf.DevicesPerSecond, size
	res.Empty, res.PrefillRounds = empty, rounds
	var sumE, sumP float64
	for _, r := range rounds {
		sumE += r.EmptyPerSecond
		sumP += r.PrefilledPerSecond
	}
	res.EmptyPerSecond, res.PrefilledPerSecond = sumE/float64(len(rounds)), sumP/float64(len(rounds))
	if sumE > 0 {
		res.PrefilledRatio = sumP / sumE
	}
	res.LedgerOK = res.LedgerOK && empty.LedgerOK
	start := time.Now()
	ok, err := verifyAudit(ctx, envP)
	if err != nil {
		return nil, err
	}
	res.AuditOK, res.AuditVerifySeconds = &ok, time.Since(start).Seconds()
	if o.Keep || o.Remeasure && o.Driver == store.Postgres {
		res.KeptDSN = envP.Config.Database.DSN
		fmt.Fprintf(logw, "bench: the prefilled PostgreSQL database is kept (%s): --remeasure measures it again; drop it with dropdb when done\n", res.KeptDSN)
	}
	return res, nil
}

// PrefillRound is one measurement of each ledger in a prefilled run.
type PrefillRound struct {
	EmptyFirst         bool    `json:"empty_first"`
	EmptyPerSecond     float64 `json:"empty_devices_per_second"`
	PrefilledPerSecond float64 `json:"prefilled_devices_per_second"`
	EmptyCPUus         float64 `json:"empty_server_cpu_us_per_device"`
	PrefilledCPUus     float64 `json:"prefilled_server_cpu_us_per_device"`
	EmptyDBCPUus       float64 `json:"empty_db_cpu_us_per_device,omitempty"`
	PrefilledDBCPUus   float64 `json:"prefilled_db_cpu_us_per_device,omitempty"`
	EmptyWALFPI        float64 `json:"empty_db_wal_fpi_per_device,omitempty"`
	PrefilledWALFPI    float64 `json:"prefilled_db_wal_fpi_per_device,omitempty"`
	Ratio              float64 `json:"ratio"`
}

// measureRounds measures the empty ledger (envE) and the prefilled one
// (envP) max(o.PrefillRounds, 1) times each, the empty one first in even
// rounds, and returns the last runs of each with every round's rates.
// Each ledger is checked (`ledger check`) after its last run only.
func measureRounds(ctx context.Context, o ProvisionOptions, envE, envP *devenv.Env) (res, empty *ProvisionResult, rounds []PrefillRound, err error) {
	n := max(o.PrefillRounds, 1)
	// The empty phase's profiles go beside the prefilled one's: X-empty.prof.
	oE := o
	oE.CPUProfile, oE.MemProfile = withSuffix(o.CPUProfile, "-empty"), withSuffix(o.MemProfile, "-empty")
	for i := range n {
		last := i == n-1
		oE.skipCheck, o.skipCheck = !last, !last
		for _, emptyNow := range []bool{i%2 == 0, i%2 != 0} {
			if emptyNow {
				if empty, err = measure(ctx, oE, envE); err != nil {
					return nil, nil, nil, fmt.Errorf("empty ledger: %w", err)
				}
			} else if res, err = measure(ctx, o, envP); err != nil {
				return nil, nil, nil, fmt.Errorf("prefilled ledger: %w", err)
			}
		}
		r := PrefillRound{EmptyFirst: i%2 == 0, EmptyPerSecond: empty.DevicesPerSecond, PrefilledPerSecond: res.DevicesPerSecond,
			EmptyCPUus: empty.ServerCPUusPerDevice, PrefilledCPUus: res.ServerCPUusPerDevice,
			EmptyDBCPUus: empty.DBCPUusPerDevice, PrefilledDBCPUus: res.DBCPUusPerDevice,
			EmptyWALFPI: empty.DBWALFPIPerDevice, PrefilledWALFPI: res.DBWALFPIPerDevice}
		if r.EmptyPerSecond > 0 {
			r.Ratio = r.PrefilledPerSecond / r.EmptyPerSecond
		}
		rounds = append(rounds, r)
		if o.Progress != nil {
			// Each round as it ends: the check and the audit verification
			// that follow the last one take minutes on a large ledger.
			fmt.Fprintf(o.Progress, "round %d of %d: prefilled %.0f devices/s (CPU per device: server %.0f us, database %.0f us), empty %.0f devices/s (%.0f us, %.0f us), ratio %.3f\n",
				i+1, n, r.PrefilledPerSecond, r.PrefilledCPUus, r.PrefilledDBCPUus, r.EmptyPerSecond, r.EmptyCPUus, r.EmptyDBCPUus, r.Ratio)
		}
	}
	return res, empty, rounds, nil
}

// withSuffix puts suffix before path's extension ("" stays "").
func withSuffix(path, suffix string) string {
	if path == "" {
		return ""
	}
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + suffix + ext
}

// verifyAudit signs a checkpoint of env's audit log with its HSM key and
// verifies the export of the whole log offline under that key (streamed
// through a pipe, never on disk).
func verifyAudit(ctx context.Context, env *devenv.Env) (bool, error) {
	db, err := store.Open(ctx, env.Config.Database)
	if err != nil {
		return false, err
	}
	defer db.Close()
	tok, err := hsm.Open(env.Config.HSM)
	if err != nil {
		return false, err
	}
	defer tok.Close()
	signer, err := tok.Signer(env.Config.Audit.KeyLabel)
	if err != nil {
		return false, err
	}
	l, err := audit.New(db, env.Config.Audit, signer)
	if err != nil {
		return false, err
	}
	if _, err := l.Checkpoint(ctx); err != nil {
		return false, err
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := audit.Export(ctx, db, pw, audit.ExportOptions{})
		pw.CloseWithError(err)
	}()
	r := audit.Verify(pr, audit.VerifyOptions{LogKey: l.Verifier().Key()})
	pr.Close()
	if !r.Valid {
		return false, fmt.Errorf("audit log verification failed: %s", r.Reason)
	}
	return true, nil
}
