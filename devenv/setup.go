// Package devenv builds and runs complete tacline environments on one
// machine: a SoftHSM2 token in a project folder, the development key
// ceremony, a test TAC catalogue, pools, enrolled stations with their
// credentials, and the server as a real child process. `tacline demo`, the
// provisioning benchmark and the end-to-end tests use it; production
// deployments use the individual commands instead.
package devenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/ca/castore"
	"github.com/tacline/tacline/catalog"
	"github.com/tacline/tacline/config"
	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/server"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// Manufacturer is the development manufacturer. Its TACs lie under the test
// reporting body 00 (GSMA TS.06), so no real manufacturer's TAC is used.
const Manufacturer = "Tacline Test Devices"

// FirstTAC is the first development TAC; station i draws from TAC
// FirstTAC + i/4, SNR quarter i%4.
const FirstTAC = 100100 // "00100100"

// Options configure Setup.
type Options struct {
	Dir      string
	Stations int           // default 4
	Driver   store.Dialect // default SQLite (Dir/ledger.db)
	DSN      string        // for PostgreSQL
	Log      io.Writer     // progress lines; nil: silent
	// AuditDisabled leaves the audit log out (benchmarks measure its cost).
	AuditDisabled bool
	// NoPools imports the catalogue but makes no pools and enrolls no
	// stations (a factory site: its pools come from leases).
	NoPools bool
	// CertifyDeviceCA, when set, replaces the development device root: the
	// environment's issuing CA key is made in its token with a CSR (as
	// `tacline ca init --infra` does), CertifyDeviceCA has another
	// deployment's root certify it (a factory site's, at headquarters:
	// `tacline ca certify`) and returns the certificate followed by that
	// root (PEM), which is imported and activated (`tacline ca import`).
	CertifyDeviceCA func(ctx context.Context, csrPEM []byte) ([]byte, error)
}

// Env is a set-up environment.
type Env struct {
	Dir        string
	ConfigPath string
	CredsDir   string // station credentials (see the layout in stations.go)
	ExportsDir string // ca-chain.pem and what the demo exports
	// IdentitiesDir holds client credentials for the other roles:
	// person-operator, person-auditor, person-regulator, person-admin.
	IdentitiesDir string
	Stations      []string // enrolled station ids
	Config        *config.File
}

// Setup creates a fresh environment in opts.Dir, replacing one made before
// (a directory holding anything but an earlier environment is refused).
func Setup(ctx context.Context, o Options) (*Env, error) {
	if o.Stations == 0 {
		o.Stations = 4
	}
	if o.Stations < 1 || o.Stations > 256 {
		return nil, tacerr.Field(tacerr.InvalidInput, "stations", "must be between 1 and 256")
	}
	if o.Driver == "" {
		o.Driver = store.SQLite
	}
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", args...)
		}
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	if err := clean(dir); err != nil {
		return nil, err
	}
	env := &Env{Dir: dir, ConfigPath: filepath.Join(dir, "tacline.yaml"), CredsDir: filepath.Join(dir, "stations"),
		ExportsDir: filepath.Join(dir, "exports"), IdentitiesDir: filepath.Join(dir, "identities")}
	for _, d := range []string{env.CredsDir, env.ExportsDir, filepath.Join(dir, "ca"), filepath.Join(dir, "server")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}

	// 1. A SoftHSM2 token in the project folder.
	pin := randomHex(8)
	hcfg, err := hsm.InitDev(filepath.Join(dir, "hsm"), hsm.DevTokenLabel, pin)
	if err != nil {
		return nil, err
	}
	hcfg.Sessions = 16
	logf("  HSM: SoftHSM2 token %q in %s (PIN in %s, never in the config)", hsm.DevTokenLabel, filepath.Join(dir, "hsm"), "hsm/pin")

	// 2. The configuration file, with paths relative to it.
	if err := writeConfig(env, o, hcfg); err != nil {
		return nil, err
	}
	cfg, err := config.Load(env.ConfigPath)
	if err != nil {
		return nil, err
	}
	env.Config = cfg
	db, err := server.OpenLedger(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	tok, err := openToken(cfg.HSM)
	if err != nil {
		return nil, err
	}
	defer tok.Close()
	if _, err := tok.GenerateKey(cfg.Audit.KeyLabel, hsm.ECP256); err != nil {
		return nil, err
	}

	// 3. Key ceremony: root, device issuing CA and station CA keys in the HSM.
	now := time.Now()
	fixed, _ := cfg.Profile.FixedNotAfter()
	var dev *castore.DevCA
	if o.CertifyDeviceCA == nil {
		dev, err = castore.InitDev(ctx, db, tok.Token, Manufacturer, "P-256", "demo", now, fixed)
	} else {
		dev, err = certifiedCA(ctx, db, tok.Token, Manufacturer+" "+filepath.Base(dir)+" Device Issuing CA", now, fixed, o.CertifyDeviceCA)
	}
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		"ca/root.pem":          castore.PEM(dev.Root),
		"ca/issuing.pem":       castore.PEM(dev.Issuing),
		"ca/infra-root.pem":    castore.PEM(dev.InfraRoot),
		"ca/station-ca.pem":    castore.PEM(dev.StationCA),
		"exports/ca-chain.pem": append(castore.PEM(dev.Issuing), castore.PEM(dev.Root)...),
		// The trust anchor of device certificates alone (never of stations).
		"exports/device-root.pem": castore.PEM(dev.Root),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return nil, err
		}
	}
	logf("  CA: device root %s -> issuing CA %s; infrastructure root %s -> station CA %s (keys in the HSM)",
		ca.KeyID(dev.Root)[:12], ca.KeyID(dev.Issuing)[:12], ca.KeyID(dev.InfraRoot)[:12], ca.KeyID(dev.StationCA)[:12])

	// 4. The server's TLS certificate, from the station CA (infrastructure
	// hierarchy).
	srv, srvKey, err := ca.ServerCert(dev.StationCA, dev.StationSigner, nil, []string{"localhost"},
		[]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, ca.ValidFor(now, 2*365*24*time.Hour))
	if err != nil {
		return nil, err
	}
	if err := castore.WriteKeyPair(filepath.Join(dir, "server"), append(castore.PEM(srv), castore.PEM(dev.StationCA)...), srvKey); err != nil {
		return nil, err
	}

	// 5. Catalogue and pools: one pool per station.
	tacs, pools := catalogue(o.Stations, now)
	if err := db.AddTACs(ctx, tacs, "demo"); err != nil {
		return nil, err
	}
	if o.NoPools {
		pools = nil
	}
	for _, p := range pools {
		if _, err := db.CreatePool(ctx, p, "demo"); err != nil {
			return nil, err
		}
	}
	logf("  catalogue: %d test TACs (00100100...), %d pools", len(tacs), len(pools))

	// 6. Stations and the other roles' identities.
	for i, p := range pools {
		id := fmt.Sprintf("F%d-L%d-S%02d", i%2+1, i/2+1, i+1)
		if _, err := castore.EnrollStation(ctx, db, tok.Token, castore.StationSpec{ID: id, Factory: p.Factory, Line: p.Line, Pools: []string{p.Name}, Product: p.Product},
			env.CredsDir, "demo"); err != nil {
			return nil, err
		}
		env.Stations = append(env.Stations, id)
	}
	for _, role := range []string{"operator", "auditor", "regulator", "admin"} {
		if _, err := castore.EnrollStation(ctx, db, tok.Token, castore.StationSpec{Roles: []string{role}, Person: role}, env.IdentitiesDir, "demo"); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(env.CredsDir, castore.ChainFile), files["exports/ca-chain.pem"], 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(env.CredsDir, castore.ServerCAFile), append(castore.PEM(dev.InfraRoot), castore.PEM(dev.StationCA)...), 0o644); err != nil {
		return nil, err
	}
	logf("  stations: %d enrolled, credentials in %s; operator/auditor/regulator/admin identities in %s", len(env.Stations), env.CredsDir, env.IdentitiesDir)
	return env, nil
}

// DevTAC is a development TAC of the catalogue: the TL-Phone 1, two IMEIs
// per device, approved for DE, allocated on January 1 of now's year.
func DevTAC(tac uint32, modelNumber string, now time.Time) catalog.TAC {
	alloc := time.Date(now.Year(), 1, 1, 0, 0, 0, 0, time.UTC)
	return catalog.TAC{TAC: tac, Brand: Manufacturer, ModelName: "TL-Phone 1", ModelNumber: modelNumber,
		MarketingName: "Tacline One", DeviceType: "Smartphone", RadioInterfaces: []string{"GSM", "LTE", "NR"}, IMEIsPerDevice: 2,
		AllocationDate: alloc, Approvals: []catalog.Approval{{Market: "DE", Reference: "DEMO-DE-" + fmt.Sprint(tac), ValidFrom: alloc}}}
}

// certifiedCA is the ceremony of an environment whose device issuing CA
// another deployment's root certifies: its infrastructure hierarchy, its
// issuing CA key and CSR (named cn), the certificate certify returns
// (checked to certify the key and chain to its root, then activated).
func certifiedCA(ctx context.Context, db *store.DB, tok *hsm.Token, cn string, now, deviceNotAfter time.Time,
	certify func(context.Context, []byte) ([]byte, error)) (*castore.DevCA, error) {
	dev, err := castore.InitInfra(ctx, db, tok, Manufacturer, "P-256", "demo", now)
	if err != nil {
		return nil, err
	}
	csr, err := ca.InitOffline(ctx, castore.Issuers{DB: db, Kind: store.IssuerDevice, Actor: "demo"}, castore.Keys{Token: tok}, ca.CeremonyOptions{IssuerLabel: castore.IssuerLabel, Organization: Manufacturer,
		IssuerCN: cn, Now: now, DeviceNotAfter: deviceNotAfter})
	if err != nil {
		return nil, err
	}
	certPEM, err := certify(ctx, csr)
	if err != nil {
		return nil, err
	}
	signer, err := tok.Signer(castore.IssuerLabel)
	if err != nil {
		return nil, err
	}
	if _, err := ca.Import(ctx, castore.Issuers{DB: db, Kind: store.IssuerDevice, Actor: "demo"}, castore.IssuerLabel, signer, certPEM, nil,
		true, now, deviceNotAfter); err != nil {
		return nil, err
	}
	certs, err := ca.ParseChainPEM(certPEM)
	if err != nil {
		return nil, err
	}
	dev.Issuing, dev.Root = certs[0], certs[len(certs)-1]
	return dev, nil
}

// catalogue makes the development TACs and one pool per station.
func catalogue(stations int, now time.Time) ([]catalog.TAC, []store.Pool) {
	var tacs []catalog.TAC
	var pools []store.Pool
	for i := 0; i < stations; i++ {
		tac := uint32(FirstTAC + i/4)
		if i%4 == 0 {
			tacs = append(tacs, DevTAC(tac, fmt.Sprintf("TLP1-%02d", i/4), now))
		}
		q := uint32(i % 4)
		pools = append(pools, store.Pool{Name: fmt.Sprintf("pool-%02d", i+1), TAC: tac, SNRStart: q * 250000, SNREnd: q*250000 + 249999,
			Factory: fmt.Sprintf("F%d", i%2+1), Line: fmt.Sprintf("L%d", i/2+1), Product: "TL-Phone-1", Market: "DE"})
	}
	return tacs, pools
}

// clean removes an earlier environment in dir; anything else is refused.
func clean(dir string) error {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		if _, err := os.Stat(filepath.Join(dir, "tacline.yaml")); err != nil {
			return tacerr.Field(tacerr.InvalidInput, "dir", "%s is not empty and holds no earlier tacline environment: choose another directory", dir)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.MkdirAll(dir, 0o755)
}

func writeConfig(env *Env, o Options, h hsm.Config) error {
	rel := func(p string) string {
		r, err := filepath.Rel(env.Dir, p)
		if err != nil {
			return p
		}
		return r
	}
	db := map[string]any{"driver": string(o.Driver), "dsn": "ledger.db"}
	if o.Driver == store.Postgres {
		db["dsn"] = o.DSN
		db["max_conns"] = 32
	}
	doc := map[string]any{
		"manufacturer": Manufacturer,
		"database":     db,
		"hsm": map[string]any{"module": h.Module, "token_label": h.TokenLabel, "pin": "file:" + rel(pinPath(h.PIN)),
			"softhsm2_conf": rel(h.SoftHSMConf), "sessions": h.Sessions},
		"server": map[string]any{"listen": "127.0.0.1:8443", "tls_cert": "server/cert.pem", "tls_key": "server/key.pem",
			"client_ca": []string{"ca/station-ca.pem"}},
		"provisioning": map[string]any{"intent_timeout": "5m", "recovery_interval": "30s"},
		"audit": map[string]any{"origin": "tacline-test-devices.example/audit", "key_label": "tacline-audit", "disabled": o.AuditDisabled,
			"published_checkpoint": "hsm/published-checkpoint"},
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	head := "# tacline configuration written by `tacline demo` (development only: test TACs, SoftHSM2).\n# Paths are relative to this file. The HSM PIN is read from the file named by hsm.pin.\n"
	return os.WriteFile(env.ConfigPath, append([]byte(head), out...), 0o644)
}

func pinPath(ref string) string {
	if len(ref) > 5 && ref[:5] == "file:" {
		return ref[5:]
	}
	return ref
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
