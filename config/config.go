// Package config reads tacline's one configuration file (tacline.yaml).
//
// The file is decoded strictly: an unknown key is an error naming its line,
// so a misspelt setting never silently falls back to a default. After
// decoding, Validate checks every section and names the first wrong field by
// its path in the file ("database.dsn", "hsm.pin"). Relative paths in the
// file are relative to the file's own directory, so a configuration works
// whatever the current directory is. Secrets never live in the file: the HSM
// PIN is a reference ("env:NAME" or "file:PATH").
//
// Each section's type belongs to the package that uses it (store.Config,
// hsm.Config, ...); this package only assembles them.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/tacline/tacline/api"
	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/console"
	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/policy"
	"github.com/tacline/tacline/provisioner/issuance"
	"github.com/tacline/tacline/register"
	"github.com/tacline/tacline/site"
	"github.com/tacline/tacline/stepca"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
	"github.com/tacline/tacline/verify/online"
	"github.com/tacline/tacline/verify/revocation"
)

// File is the whole configuration.
type File struct {
	// Manufacturer is the organisation name put in certificates (O=).
	Manufacturer string              `yaml:"manufacturer" doc:"organisation name put in certificates (O=); required"`
	Database     store.Config        `yaml:"database" doc:"the ledger database"`
	HSM          hsm.Config          `yaml:"hsm" doc:"the PKCS#11 token holding every signing key"`
	Server       api.Config          `yaml:"server" doc:"the HTTP API over mutual TLS"`
	Profile      policy.Profile      `yaml:"profile" doc:"the device certificate profile"`
	CSR          policy.CSRRules     `yaml:"csr" doc:"which device keys are accepted"`
	Lint         issuance.LintConfig `yaml:"lint" doc:"pre-issuance linting with zlint"`
	Provisioning Provisioning        `yaml:"provisioning" doc:"timeouts of the provisioning use cases"`
	Audit        audit.Config        `yaml:"audit" doc:"the tamper-evident audit log and its checkpoints"`
	// Register is the national register. Ledger changes always go to the
	// outbox; they are delivered once register.url is set.
	Register register.Config `yaml:"register" doc:"the national register; events always go to the outbox and are delivered once url is set"`
	// Authenticity tunes challenges, verification and the public lookup.
	Authenticity Authenticity `yaml:"authenticity" doc:"challenges, authenticity checks and the public lookup"`
	// Revocation tunes CRLs and OCSP responses.
	Revocation revocation.Config `yaml:"revocation" doc:"CRLs and OCSP responses"`
	// Issuer chooses who signs device certificates: tacline's HSM (kind
	// hsm, the default) or an upstream step-ca with tacline as its
	// registration authority (kind stepca, configured in StepCA).
	Issuer  Issuer           `yaml:"issuer" doc:"who signs device certificates"`
	StepCA  stepca.Config    `yaml:"stepca" doc:"the upstream step-ca: it signs with issuer kind stepca; keep the section after switching back to an HSM issuer so the requests step-ca signed are still answered and revoked at step-ca (docs/stepca.md)"`
	Console console.Settings `yaml:"console" doc:"the web console and the public IMEI check page"`
	// Site makes this server a factory site provisioning on leases from
	// headquarters (docs/sites.md) when site.name is set.
	Site site.Config `yaml:"site" doc:"factory site mode: leases and sync with headquarters (docs/sites.md)"`
	// HQ is headquarters' side of sites: the leases it grants.
	HQ site.HQConfig `yaml:"hq" doc:"headquarters' side of factory sites (docs/sites.md)"`

	// dir is the directory of the file; relative paths resolve against it.
	dir string
}

// Provisioning tunes the provisioning use cases.
type Provisioning struct {
	// IntentTimeout: a provisioning intent (IMEIs reserved, certificate not
	// yet bound) still pending after it is abandoned and its IMEIs voided.
	IntentTimeout time.Duration `yaml:"intent_timeout" doc:"a provisioning intent still pending after this is abandoned and its IMEIs voided (at least 1s)"`
	// PreallocationTimeout: pre-allocated IMEIs never bound after it are
	// voided (0: never).
	PreallocationTimeout time.Duration `yaml:"preallocation_timeout" doc:"pre-allocated IMEIs never bound after this are voided (0: never)"`
	// RecoveryInterval: how often the recovery loop runs.
	RecoveryInterval time.Duration `yaml:"recovery_interval" doc:"how often the recovery loop runs (at least 1s)"`
	// IssuerRefresh: how often a running server reads the ledger's issuers
	// to pick up `tacline ca rotate` or `ca import --activate` made
	// elsewhere (SIGHUP reads them at once).
	IssuerRefresh time.Duration `yaml:"issuer_refresh" doc:"how often a running server reads the ledger issuers for rotations (100ms to 1h; SIGHUP: at once)"`
}

// Authenticity is the `authenticity:` section: the API's public-verify and
// rate-limit settings and the challenges' lifetime, in one flat section.
type Authenticity struct {
	API    api.AuthenticityConfig `yaml:",inline"`
	Online online.Config          `yaml:",inline"`
}

// Issuer kinds.
const (
	IssuerHSM    = "hsm"
	IssuerStepCA = "stepca"
)

// Issuer is the issuer section.
type Issuer struct {
	Kind string `yaml:"kind" doc:"hsm (tacline's HSM signs, the default) or stepca (an upstream step-ca signs, tacline as its RA)"`
}

// Defaults returns a File with every section's defaults, before decoding.
func Defaults() File {
	return File{
		Profile: policy.DefaultProfile(),
		CSR:     policy.DefaultCSRRules(),
		Lint:    issuance.DefaultLintConfig(),
		Provisioning: Provisioning{IntentTimeout: 5 * time.Minute, PreallocationTimeout: 30 * 24 * time.Hour,
			RecoveryInterval: 30 * time.Second, IssuerRefresh: 5 * time.Second},
		Audit:        audit.Config{Origin: "tacline.invalid/audit", KeyLabel: "tacline-audit"},
		Authenticity: Authenticity{API: api.DefaultAuthenticityConfig(), Online: online.DefaultConfig()},
		Revocation:   revocation.DefaultConfig(),
		Register:     register.Config{Retention: register.DefaultRetention},
		Issuer:       Issuer{Kind: IssuerHSM},
		HQ:           site.HQConfig{Lease: site.DefaultLeasePolicy()},
	}
}

// Load reads, decodes and validates the file at path.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, tacerr.New(tacerr.InvalidConfig, "configuration file %s does not exist: pass --config FILE (`tacline demo` writes one to var/demo/tacline.yaml)", path)
		}
		return nil, tacerr.Wrap(tacerr.InvalidConfig, err, "read configuration %s", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.InvalidConfig, err, "configuration path %s", path)
	}
	return Parse(data, filepath.Dir(abs))
}

var unknownField = regexp.MustCompile(`line (\d+): field (\S+) not found in type (\S+)`)

// Parse decodes and validates a configuration; dir is where relative paths
// resolve.
func Parse(data []byte, dir string) (*File, error) {
	f := Defaults()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if m := unknownField.FindStringSubmatch(err.Error()); m != nil {
			return nil, tacerr.Field(tacerr.InvalidConfig, m[2], "line %s: unknown key %q (in %s): check its spelling and indentation", m[1], m[2], m[3])
		}
		return nil, tacerr.Wrap(tacerr.InvalidConfig, err, "configuration is not valid YAML for tacline")
	}
	f.dir = dir
	f.resolvePaths()
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

// Dir is the directory that relative paths in the file resolve against.
func (f *File) Dir() string { return f.dir }

// HasStepCA reports whether the configuration has a stepca section: with
// issuer kind stepca step-ca signs; with kind hsm tacline still answers
// replays of the requests step-ca signed and revokes their devices at
// step-ca (docs/stepca.md).
func (f *File) HasStepCA() bool { return f.StepCA != stepca.Config{} }

// Path resolves p against the file's directory.
func (f *File) Path(p string) string {
	if p == "" || filepath.IsAbs(p) || f.dir == "" {
		return p
	}
	return filepath.Join(f.dir, p)
}

func (f *File) resolvePaths() {
	if f.Database.Driver == store.SQLite && !strings.Contains(f.Database.DSN, "://") {
		f.Database.DSN = f.Path(strings.TrimPrefix(f.Database.DSN, "file:"))
	}
	if strings.HasPrefix(f.HSM.PIN, "file:") {
		f.HSM.PIN = "file:" + f.Path(strings.TrimPrefix(f.HSM.PIN, "file:"))
	}
	f.HSM.SoftHSMConf = f.Path(f.HSM.SoftHSMConf)
	f.Audit.PublishedCheckpoint = f.Path(f.Audit.PublishedCheckpoint)
	f.Server.ResolvePaths(f.Path)
	f.Console.ResolvePaths(f.Path)
	f.Site.CertFile, f.Site.KeyFile, f.Site.CAFile = f.Path(f.Site.CertFile), f.Path(f.Site.KeyFile), f.Path(f.Site.CAFile)
	if strings.Contains(f.HSM.Module, "/") {
		f.HSM.Module = f.Path(f.HSM.Module)
	}
	f.StepCA.Root = f.Path(f.StepCA.Root)
	f.StepCA.IssuerCert = f.Path(f.StepCA.IssuerCert)
}

// Validate checks every section and names the first wrong field.
func (f *File) Validate() error {
	if strings.TrimSpace(f.Manufacturer) == "" {
		return tacerr.Field(tacerr.InvalidConfig, "manufacturer", "is required: the organisation name certificates carry (O=)")
	}
	if err := f.Database.Validate(); err != nil {
		return err
	}
	if err := f.Profile.Validate(); err != nil {
		return err
	}
	if err := f.CSR.Validate(); err != nil {
		return err
	}
	if err := f.Lint.Validate(); err != nil {
		return err
	}
	if err := f.Audit.Validate(); err != nil {
		return err
	}
	if err := f.Authenticity.API.Validate(); err != nil {
		return err
	}
	if err := f.Authenticity.Online.Validate(); err != nil {
		return err
	}
	if err := f.Revocation.Validate(); err != nil {
		return err
	}
	switch f.Issuer.Kind {
	case IssuerHSM:
		if f.HasStepCA() { // kept after a switch back: step-ca's issuers are served retired
			if err := f.StepCA.Validate(); err != nil {
				return err
			}
		}
	case IssuerStepCA:
		if err := f.StepCA.Validate(); err != nil {
			return err
		}
	default:
		return tacerr.Field(tacerr.InvalidConfig, "issuer.kind", "must be %s (tacline's HSM signs, the default) or %s (an upstream step-ca signs, see docs/stepca.md), got %q", IssuerHSM, IssuerStepCA, f.Issuer.Kind)
	}
	if err := f.Console.Validate(); err != nil {
		return err
	}
	if f.Register.URL != "" {
		f.Register = f.Register.WithDefaults()
		if err := f.Register.Validate(); err != nil {
			return err
		}
	} else if err := f.Register.ValidateRetention(); err != nil {
		return err
	}
	if err := f.HQ.Lease.Validate(); err != nil {
		return err
	}
	if f.Site.Name != "" {
		if err := f.Site.Validate(); err != nil {
			return err
		}
		if err := f.Site.ValidateConnection(); err != nil {
			return err
		}
		if f.Register.URL != "" {
			return tacerr.Field(tacerr.InvalidConfig, "register.url", "a site does not report to the register: headquarters reports for every site; remove it")
		}
	}
	p := f.Provisioning
	switch {
	case p.IntentTimeout < time.Second:
		return tacerr.Field(tacerr.InvalidConfig, "provisioning.intent_timeout", "must be at least 1s (default 5m)")
	case p.PreallocationTimeout < 0:
		return tacerr.Field(tacerr.InvalidConfig, "provisioning.preallocation_timeout", "must not be negative (0: never)")
	case p.RecoveryInterval < time.Second:
		return tacerr.Field(tacerr.InvalidConfig, "provisioning.recovery_interval", "must be at least 1s (default 30s)")
	case p.IssuerRefresh < 100*time.Millisecond || p.IssuerRefresh > time.Hour:
		return tacerr.Field(tacerr.InvalidConfig, "provisioning.issuer_refresh", "must be between 100ms and 1h (default 5s), got %s", p.IssuerRefresh)
	}
	return nil
}

// ValidateServer checks the server section; `tacline serve` calls it.
func (f *File) ValidateServer() error { return f.Server.Validate() }

// ValidateHSM checks the hsm section; commands that use the HSM call it.
func (f *File) ValidateHSM() error {
	if err := f.HSM.Validate(); err != nil {
		return err
	}
	return nil
}

// Marshal renders the configuration as YAML (for `tacline demo`, which
// writes the file later commands use).
func (f *File) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		return nil, fmt.Errorf("encode configuration: %w", err)
	}
	return buf.Bytes(), nil
}
