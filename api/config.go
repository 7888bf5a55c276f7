package api

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math"
	"net"
	"os"
	"regexp"
	"runtime/debug"
	"strings"
	"time"

	"github.com/tacline/tacline/internal/pemblock"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/tacerr"
)

// Config is the `server:` section of tacline's configuration file.
type Config struct {
	// Listen is the TCP address to serve on ("127.0.0.1:8443").
	Listen string `yaml:"listen" doc:"TCP address the API serves on, e.g. 127.0.0.1:8443"`
	// TLSCert and TLSKey are PEM files: the server's certificate (followed
	// by its intermediates) and its private key.
	TLSCert string `yaml:"tls_cert" doc:"PEM file: the server certificate followed by its intermediates"`
	TLSKey  string `yaml:"tls_key" doc:"PEM file: the server private key"`
	// ClientCA lists PEM files of the CAs that issue tacline identities
	// (tacline's station CA): their certificates' URI SANs
	// urn:tacline:station:<ID> and urn:tacline:role:<role> are honoured.
	ClientCA []string `yaml:"client_ca" doc:"PEM files of the CAs that issue tacline identities (the station CA); their urn:tacline URI SANs are honoured"`
	// MappedCA lists PEM files of other CAs whose client certificates are
	// trusted (a manufacturer's step-ca, say). Their tacline URNs are
	// ignored: such a certificate gets an identity only from IdentityMap.
	MappedCA        []string `yaml:"mapped_ca" doc:"PEM files of other trusted client CAs (e.g. a step-ca); their certificates get identities only from identity_map"`
	StepCAStationCA []string `yaml:"stepca_station_ca" doc:"PEM files of a step-ca whose station provisioner writes urn:tacline:station:<ID> (docs/stepca.md); their certificates name their station by that URI SAN, never a role"`
	// StepCACRL is the URL of that step-ca's CRL (https://ca:9000/1.0/crl),
	// read every StepCACRLRefresh (default 1m): a revoked station
	// certificate is refused with a 401 saying so.
	StepCACRL        string        `yaml:"stepca_crl" doc:"step-ca's CRL URL (https://ca:9000/1.0/crl); station certificates on it are refused with a 401"`
	StepCACRLRefresh time.Duration `yaml:"stepca_crl_refresh" doc:"how often stepca_crl is read (default 1m)"`
	// IdentityMap maps identities of certificates (from any trusted CA) to
	// a station or to roles.
	IdentityMap []IdentityRule `yaml:"identity_map" doc:"rules mapping a client certificate (by URI, DNS or CN) to a station and/or roles"`
	// Timeouts of the HTTP server (0: the defaults below).
	ReadTimeout  time.Duration `yaml:"read_timeout" doc:"HTTP read timeout (0: 10s)" default:"10s"`
	WriteTimeout time.Duration `yaml:"write_timeout" doc:"HTTP write timeout (0: 30s)" default:"30s"`
	IdleTimeout  time.Duration `yaml:"idle_timeout" doc:"HTTP keep-alive idle timeout (0: 2m)" default:"2m0s"`
	// GCPercent is the Go garbage collector's heap growth target for
	// `tacline serve` (what GOGC sets): 0 means DefaultGCPercent. A request
	// allocates a few hundred KiB (TLS records, JSON, certificates, SQL
	// rows) over a live heap of a few tens of MiB, so at Go's default of
	// 100 the collector ran every few dozen requests. The GOGC environment
	// variable, when set, wins.
	GCPercent int `yaml:"gc_percent" doc:"Go garbage collector target of tacline serve, as GOGC (0: 400; the GOGC variable wins)" default:"400"`
	// MemoryLimitMiB is a soft limit on the process's Go memory (what
	// GOMEMLIMIT sets): near it the collector runs as often as needed
	// whatever gc_percent says. 0: no limit. The GOMEMLIMIT environment
	// variable, when set, wins.
	MemoryLimitMiB int `yaml:"memory_limit_mib" doc:"soft memory limit of tacline serve in MiB, as GOMEMLIMIT (0: none; the variable wins)"`
}

// DefaultGCPercent is server.gc_percent's default: the heap may grow to five
// times what is live before a collection (a few hundred MiB at most for the
// server's own data), which cut the server's CPU per provisioned device by
// about a tenth in `tacline bench provision`.
const DefaultGCPercent = 400

// Default timeouts.
const (
	DefaultReadTimeout  = 10 * time.Second
	DefaultWriteTimeout = 30 * time.Second
	DefaultIdleTimeout  = 120 * time.Second
)

// IdentityRule maps a certificate whose URI SAN, DNS SAN or subject common
// name equals the given value (exactly one of URI, DNS, CN) to a station
// (role station) and/or roles.
type IdentityRule struct {
	URI     string   `yaml:"uri" doc:"match certificates with this URI SAN (exactly one of uri, dns, cn)"`
	DNS     string   `yaml:"dns" doc:"match certificates with this DNS SAN"`
	CN      string   `yaml:"cn" doc:"match certificates with this subject common name"`
	Station string   `yaml:"station" doc:"the station id a matching certificate acts as (role station)"`
	Roles   []string `yaml:"roles" doc:"roles a matching certificate gets: station, operator, auditor, regulator, admin"`
}

var stationID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ResolvePaths rewrites the file names of c with resolve (for example
// config.File.Path, which makes them relative to the configuration file).
func (c *Config) ResolvePaths(resolve func(string) string) {
	c.TLSCert = resolve(c.TLSCert)
	c.TLSKey = resolve(c.TLSKey)
	for i := range c.ClientCA {
		c.ClientCA[i] = resolve(c.ClientCA[i])
	}
	for i := range c.MappedCA {
		c.MappedCA[i] = resolve(c.MappedCA[i])
	}
	for i := range c.StepCAStationCA {
		c.StepCAStationCA[i] = resolve(c.StepCAStationCA[i])
	}
}

// Validate checks c without reading files and names the first wrong field
// ("server.tls_cert"). Errors have code invalid_config.
func (c Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return tacerr.Field(tacerr.InvalidConfig, "server."+field, format, args...)
	}
	if c.Listen == "" {
		return bad("listen", "is required: the address to serve on, e.g. 127.0.0.1:8443")
	}
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		return bad("listen", "%q is not host:port (e.g. 127.0.0.1:8443 or :8443)", c.Listen)
	}
	if c.TLSCert == "" {
		return bad("tls_cert", "is required: the PEM file of the server's certificate")
	}
	if c.TLSKey == "" {
		return bad("tls_key", "is required: the PEM file of the server's private key")
	}
	if len(c.ClientCA) == 0 {
		return bad("client_ca", "list at least one PEM file: the station CA that issues station certificates")
	}
	for i, f := range c.ClientCA {
		if f == "" {
			return bad(fmt.Sprintf("client_ca[%d]", i), "is empty: give a PEM file name")
		}
	}
	for i, f := range c.MappedCA {
		if f == "" {
			return bad(fmt.Sprintf("mapped_ca[%d]", i), "is empty: give a PEM file name")
		}
	}
	for i, f := range c.StepCAStationCA {
		if f == "" {
			return bad(fmt.Sprintf("stepca_station_ca[%d]", i), "is empty: give a PEM file name")
		}
	}
	if c.StepCACRL != "" && (len(c.StepCAStationCA) == 0 || !strings.HasPrefix(c.StepCACRL, "https://")) {
		return bad("stepca_crl", "must be step-ca's https CRL URL (https://ca.example:9000/1.0/crl), with stepca_station_ca set")
	}
	if c.StepCACRLRefresh < 0 || c.StepCACRLRefresh > 24*time.Hour {
		return bad("stepca_crl_refresh", "must be between 0 (default 1m) and 24h, got %s", c.StepCACRLRefresh)
	}
	for i, r := range c.IdentityMap {
		if err := r.validate(fmt.Sprintf("identity_map[%d]", i), bad); err != nil {
			return err
		}
	}
	for _, t := range []struct {
		name string
		d    time.Duration
	}{{"read_timeout", c.ReadTimeout}, {"write_timeout", c.WriteTimeout}, {"idle_timeout", c.IdleTimeout}} {
		if t.d < 0 {
			return bad(t.name, "must not be negative (0 means the default), got %s", t.d)
		}
	}
	if c.GCPercent < 0 {
		return bad("gc_percent", "must not be negative (0 means the default, %d), got %d", DefaultGCPercent, c.GCPercent)
	}
	if c.MemoryLimitMiB < 0 {
		return bad("memory_limit_mib", "must not be negative (0 means no limit), got %d", c.MemoryLimitMiB)
	}
	return nil
}

// TuneRuntime applies gc_percent and memory_limit_mib to the Go runtime
// (process-wide; `tacline serve` calls it once at start-up), unless GOGC or
// GOMEMLIMIT are set in the environment. It returns the settings in force
// (-1: unlimited).
func (c Config) TuneRuntime() (gcPercent int, memoryLimit int64) {
	gcPercent = c.GCPercent
	if gcPercent == 0 {
		gcPercent = DefaultGCPercent
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	} else {
		gcPercent = debug.SetGCPercent(-1)
		debug.SetGCPercent(gcPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" && c.MemoryLimitMiB > 0 {
		debug.SetMemoryLimit(int64(c.MemoryLimitMiB) << 20)
	}
	memoryLimit = debug.SetMemoryLimit(-1)
	if memoryLimit == math.MaxInt64 {
		memoryLimit = -1
	}
	return gcPercent, memoryLimit
}

func (r IdentityRule) validate(at string, bad func(string, string, ...any) error) error {
	n := 0
	for _, v := range []string{r.URI, r.DNS, r.CN} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return bad(at+".uri", "set exactly one of uri, dns and cn to say what the rule matches")
	}
	if r.Station == "" && len(r.Roles) == 0 {
		return bad(at+".station", "the rule grants nothing: set station, roles or both")
	}
	if r.Station != "" && !stationID.MatchString(r.Station) {
		return bad(at+".station", "%q must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", r.Station)
	}
	for j, role := range r.Roles {
		if !provisioner.Role(role).Valid() {
			return bad(fmt.Sprintf("%s.roles[%d]", at, j), "%q is not one of station, operator, auditor, regulator, admin", role)
		}
	}
	return nil
}

func (c Config) timeouts() (read, write, idle time.Duration) {
	read, write, idle = c.ReadTimeout, c.WriteTimeout, c.IdleTimeout
	if read == 0 {
		read = DefaultReadTimeout
	}
	if write == 0 {
		write = DefaultWriteTimeout
	}
	if idle == 0 {
		idle = DefaultIdleTimeout
	}
	return read, write, idle
}

// loadCAs reads the PEM files named by field[i] into pool and returns
// their certificates.
func loadCAs(field string, files []string, pool *x509.CertPool) ([]*x509.Certificate, error) {
	var all []*x509.Certificate
	for i, f := range files {
		name := fmt.Sprintf("server.%s[%d]", field, i)
		certs, err := pemblock.CertFile(f, tacerr.InvalidConfig, name)
		if err != nil {
			return nil, err
		}
		for _, c := range certs {
			if !c.IsCA {
				return nil, tacerr.Field(tacerr.InvalidConfig, name, "%s: certificate %q is not a CA certificate", f, c.Subject)
			}
			pool.AddCert(c)
		}
		all = append(all, certs...)
	}
	return all, nil
}

// loadServerCert reads the server's certificate and key.
func loadServerCert(c Config) (tls.Certificate, error) {
	return pemblock.KeyPair(c.TLSCert, c.TLSKey, tacerr.InvalidConfig, "server.tls_cert", "server.tls_key")
}
