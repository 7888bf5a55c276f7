// Package register reports the ledger to the national IMEI register and
// loses nothing doing it.
//
// Reporting is a transactional outbox: [Outbox] is a store.Sink, so every
// IMEI state change (bound -> registered, voided, revoked, reissued ->
// updated) writes one outbox row per IMEI, with its own idempotency key, in
// the same database transaction as the ledger change. Nothing is reported
// that the ledger did not commit; nothing it committed is left unreported.
//
// [Worker] delivers outbox rows to the register's JSON API
// (docs/register-api.md) in batches bounded by size and age. It claims rows
// with a lease (claim_until) inside a transaction, with FOR UPDATE SKIP
// LOCKED on PostgreSQL, so replicas sharing one database never send the same
// row concurrently and a replica that dies mid-batch loses nothing: its
// claim expires and another worker (or itself, restarted) sends the rows
// again under the same idempotency keys, which the register answers
// duplicate. Delivery is ordered per IMEI (a row is never claimed while an
// earlier row of the same IMEI is open). Failures back off exponentially
// with jitter, and a circuit breaker stops hammering a register that is
// down. A register answer that is not a well-formed response to the batch
// leaves the whole batch pending with the error recorded.
//
// Each row's state is kept: pending, sent (claimed, in flight),
// acknowledged (with the register's receipt id) or rejected (with the
// register's reason). A conflict (the register holds the IMEI for another
// device or manufacturer) is a clone alert: the row is kept rejected,
// surfaced by [Status] and the metrics, and never retried blindly.
//
// Acknowledged rows are deleted after Config.Retention ([Prune], run by the
// worker once per [PruneInterval]); no other row is. The acknowledged count
// is a counter kept by triggers, so [Status] never scans the history.
package register

import (
	"crypto/tls"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/tacline/tacline/internal/pemblock"
	"github.com/tacline/tacline/internal/retry"
	"github.com/tacline/tacline/register/wire"
	"github.com/tacline/tacline/tacerr"
)

// Config is the register section of the configuration file.
type Config struct {
	// URL is the register's base URL; the API lives under /v1/ below its
	// path, and its query, if any, is sent with every request
	// (https://reg.example/api?tenant=x posts to
	// https://reg.example/api/v1/registrations?tenant=x). It is https://
	// with a client certificate (TLS.CertFile) unless the host is loopback
	// (127.0.0.0/8, ::1, localhost), where plain http is allowed (the
	// register simulator, tests). A fragment (#...) is refused: it is
	// never sent.
	URL string `yaml:"url" doc:"base URL of the national register (https with a client certificate; http only on loopback); the API lives under /v1/ below its path, a query is kept on every request; empty: events wait in the outbox"`
	// BatchSize is the largest number of events per request (1 to 1000).
	BatchSize int `yaml:"batch_size" doc:"largest number of events per request (1 to 1000)"`
	// BatchAge is how long the oldest ready event may wait for a batch to
	// fill before a smaller batch is sent.
	BatchAge time.Duration `yaml:"batch_age" doc:"how long the oldest ready event waits for a batch to fill"`
	// Timeout bounds one request to the register.
	Timeout time.Duration `yaml:"timeout" doc:"bound on one request to the register"`
	// Lease is how long a claimed batch belongs to its worker; a worker
	// that dies mid-batch has its rows sent again after it. It must exceed
	// Timeout.
	Lease time.Duration `yaml:"lease" doc:"how long a claimed batch belongs to its worker (more than timeout)"`
	// Poll is the idle wait between looks at the outbox.
	Poll time.Duration `yaml:"poll" doc:"idle wait between looks at the outbox"`
	// Retention is how long acknowledged outbox rows are kept before the
	// delivery worker deletes them (0: forever). The configuration file's
	// default is DefaultRetention; pending, sent and rejected rows are never
	// deleted.
	Retention time.Duration `yaml:"retention" doc:"acknowledged outbox rows are deleted after this (0: never)"`
	// PruneBatch is the number of rows one pruning transaction deletes (1 to
	// 10000, default DefaultPruneBatch).
	PruneBatch int     `yaml:"prune_batch" doc:"rows deleted per pruning transaction (1 to 10000)"`
	Backoff    Backoff `yaml:"backoff" doc:"retry delay after a failed batch, doubling with jitter"`
	Breaker    Breaker `yaml:"breaker" doc:"circuit breaker over consecutive failed batches"`
	TLS        TLS     `yaml:"tls" doc:"trust and client certificate for the register connection"`
}

// Backoff is the retry delay after a failed batch: at most Initial,
// doubling per attempt up to Max, with full jitter (internal/retry). A row
// is retried until it is delivered; only the circuit breaker and a 429 or
// 503's Retry-After (at most Max) pause it.
type Backoff struct {
	Initial time.Duration `yaml:"initial" doc:"first retry delay"`
	Max     time.Duration `yaml:"max" doc:"largest retry delay"`
}

// Policy is b as the one retry policy type.
func (b Backoff) Policy() retry.Policy { return retry.Policy{Initial: b.Initial, Max: b.Max} }

// Breaker opens after Failures consecutive failed batches and stays open
// for Cooldown; then one trial batch decides.
type Breaker struct {
	Failures int           `yaml:"failures" doc:"consecutive failed batches that open the breaker"`
	Cooldown time.Duration `yaml:"cooldown" doc:"how long the breaker stays open before one trial batch"`
}

// TLS configures the connection to the register: a CA bundle to trust
// instead of the system's, and a client certificate if the register
// requires one.
type TLS struct {
	CAFile   string `yaml:"ca_file" doc:"PEM file of CAs trusted for the register (empty: the system roots)"`
	CertFile string `yaml:"cert_file" doc:"PEM client certificate for the register"`
	KeyFile  string `yaml:"key_file" doc:"PEM private key of cert_file"`
}

// WithDefaults fills unset fields.
func (c Config) WithDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.BatchSize == 0 {
		c.BatchSize = 100
	}
	if c.PruneBatch == 0 {
		c.PruneBatch = DefaultPruneBatch
	}
	def(&c.BatchAge, time.Second)
	def(&c.Timeout, 10*time.Second)
	def(&c.Lease, time.Minute)
	def(&c.Poll, 500*time.Millisecond)
	def(&c.Backoff.Initial, time.Second)
	def(&c.Backoff.Max, 5*time.Minute)
	def(&c.Breaker.Cooldown, 30*time.Second)
	if c.Breaker.Failures == 0 {
		c.Breaker.Failures = 5
	}
	return c
}

// Validate names the first wrong field, as in the configuration file.
func (c Config) Validate() error {
	f := func(field, format string, args ...any) error {
		return tacerr.Field(tacerr.InvalidConfig, "register."+field, format, args...)
	}
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		return f("url", "is required: the register's base URL, e.g. https://register.example/")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return f("url", "%q is not an http(s) URL", c.URL)
	case strings.Contains(c.URL, "#"):
		return f("url", "%q has a fragment (#...), which is never sent to a server: remove it (a query, ?tenant=x, is kept)", c.URL)
	case u.Scheme == "http" && !loopbackHost(u.Hostname()):
		return f("url", "%q: plain http is allowed only to a loopback host (127.0.0.0/8, ::1, localhost); a remote register needs https:// and a client certificate (register.tls.cert_file, key_file)", c.URL)
	case !loopbackHost(u.Hostname()) && c.TLS.CertFile == "":
		return f("tls.cert_file", "is required for the remote register %s: tacline authenticates to it with a client certificate (register.tls.cert_file and key_file)", u.Host)
	case c.BatchSize < 1 || c.BatchSize > 1000:
		return f("batch_size", "%d is out of range: 1 to 1000", c.BatchSize)
	case c.BatchAge < 0:
		return f("batch_age", "must not be negative")
	case c.Timeout <= 0:
		return f("timeout", "must be positive, e.g. 10s")
	case c.Lease <= c.Timeout:
		return f("lease", "%s must exceed register.timeout (%s), or a slow request would lose its claim", c.Lease, c.Timeout)
	case c.Poll <= 0:
		return f("poll", "must be positive, e.g. 500ms")
	case c.Backoff.Initial <= 0:
		return f("backoff.initial", "must be positive, e.g. 1s")
	case c.Backoff.Max < c.Backoff.Initial:
		return f("backoff.max", "%s is less than register.backoff.initial (%s)", c.Backoff.Max, c.Backoff.Initial)
	case c.Breaker.Failures < 1:
		return f("breaker.failures", "must be at least 1")
	case c.Breaker.Cooldown <= 0:
		return f("breaker.cooldown", "must be positive, e.g. 30s")
	case (c.TLS.CertFile == "") != (c.TLS.KeyFile == ""):
		return f("tls.key_file", "tls.cert_file and tls.key_file go together")
	}
	return c.ValidateRetention()
}

// endpoint is the URL batches are posted to: wire.Path below register.url's
// path, with register.url's query (https://reg.example/api?tenant=x ->
// https://reg.example/api/v1/registrations?tenant=x). Validate has
// accepted c.URL.
func (c Config) endpoint() (string, error) {
	u, err := url.Parse(c.URL)
	if err != nil {
		return "", tacerr.Wrap(tacerr.InvalidConfig, err, "register.url")
	}
	return u.JoinPath(wire.Path).String(), nil
}

// loopbackHost reports whether host (a URL's host name, without port or
// brackets) is this machine: "localhost" or a loopback IP address. Names
// that resolve to a loopback address are not (resolution can change).
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// DefaultRetention is the configuration file's register.retention: 30 days.
const DefaultRetention = 30 * 24 * time.Hour

// MinRetention is the shortest retention accepted (a shorter one is more
// likely a unit mistake than a policy).
const MinRetention = time.Hour

// ValidateRetention checks the retention fields alone (they apply to
// `tacline register prune` even without a register URL). PruneBatch 0
// means the default.
func (c Config) ValidateRetention() error {
	switch {
	case c.Retention < 0:
		return tacerr.Field(tacerr.InvalidConfig, "register.retention", "must not be negative: 0 keeps acknowledged events forever, e.g. 720h keeps 30 days")
	case c.Retention > 0 && c.Retention < MinRetention:
		return tacerr.Field(tacerr.InvalidConfig, "register.retention", "%s is below %s: 0 keeps acknowledged events forever, e.g. 720h keeps 30 days", c.Retention, MinRetention)
	case c.PruneBatch < 0 || c.PruneBatch > 10000:
		return tacerr.Field(tacerr.InvalidConfig, "register.prune_batch", "%d is out of range: 1 to 10000 (default %d)", c.PruneBatch, DefaultPruneBatch)
	}
	return nil
}

// httpClient builds the client for the register.
func (c Config) httpClient() (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tcfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.TLS.CAFile != "" {
		pool, err := pemblock.CertPool(c.TLS.CAFile, tacerr.InvalidConfig, "register.tls.ca_file")
		if err != nil {
			return nil, err
		}
		tcfg.RootCAs = pool
	}
	if c.TLS.CertFile != "" {
		cert, err := pemblock.KeyPair(c.TLS.CertFile, c.TLS.KeyFile, tacerr.InvalidConfig, "register.tls.cert_file", "register.tls.key_file")
		if err != nil {
			return nil, err
		}
		tcfg.Certificates = []tls.Certificate{cert}
	}
	tr.TLSClientConfig = tcfg
	// No redirect is followed: a 307 or 308 would post the batch again to
	// a host register.url never named (over plain http too, with the
	// client certificate offered there), bypassing Validate's checks. The
	// 3xx answer is a failed batch like any other non-200 (see send).
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &http.Client{Transport: tr, Timeout: c.Timeout, CheckRedirect: noRedirect}, nil
}
