// Package server assembles a running tacline server from its configuration:
// the ledger, the HSM token and its signers, the device issuers, the
// provisioner, the HTTP API over mutual TLS and the recovery loop. It owns
// start-up order and shutdown; every decision it wires belongs to another
// package.
package server

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/mod/sumdb/note"

	"github.com/tacline/tacline/api"
	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/ca/castore"
	"github.com/tacline/tacline/config"
	"github.com/tacline/tacline/console"
	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/register"
	"github.com/tacline/tacline/site"
	"github.com/tacline/tacline/stepca"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
	"github.com/tacline/tacline/verify/online"
)

// Server is an assembled tacline server.
type Server struct {
	cfg      *config.File
	log      *slog.Logger
	DB       *store.DB
	Token    *hsm.Token
	Service  *provisioner.Service
	API      *api.Server
	Registry *prometheus.Registry
	Audit    *audit.Log
	Worker   *register.Worker // nil unless register.url is set
	Site     *site.Site       // nil unless site.name is set (a factory site)
	// Authority serves the authenticity checks, CRLs and OCSP.
	Authority online.Authority
	// Console is the web console and the public check page, served on the
	// API's listener.
	Console *console.Console

	issuers    *issuers           // device issuers, kept in step with the ledger
	stationCRL *stepca.CRLWatcher // step-ca's CRL for step-ca station identities, or nil
	reload     chan struct{}      // TriggerIssuerRefresh
	warm       warmState          // the ledger's start-up warm-up (warm.go)
}

// OpenLedger opens the ledger with its event sinks attached: the audit log
// (append only: checkpoints are signed by the server) and the register
// outbox. Every process that changes the ledger opens it this way, so that
// every change, whichever command makes it, is audited and reported.
func OpenLedger(ctx context.Context, cfg *config.File) (*store.DB, error) {
	return openLedger(ctx, cfg, nil)
}

func openLedger(ctx context.Context, cfg *config.File, auditKey crypto.Signer) (*store.DB, error) {
	db, err := store.Open(ctx, cfg.Database)
	if err != nil {
		return nil, err
	}
	if _, err := attachSinks(db, cfg, auditKey); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func attachSinks(db *store.DB, cfg *config.File, auditKey crypto.Signer) (*audit.Log, error) {
	l, err := audit.New(db, cfg.Audit, auditKey)
	if err != nil {
		return nil, err
	}
	l.Attach()
	if cfg.Site.Name != "" {
		// A site ships its events to headquarters, which alone reports
		// to the register (docs/sites.md).
		db.AddSink(store.SiteOutbox{})
	} else {
		db.AddSink(register.Outbox{})
	}
	return l, nil
}

// New opens the ledger and the HSM, loads every device issuer and builds the
// provisioner and the API. Close releases them. Run keeps the issuers in
// step with the ledger (`tacline ca rotate` elsewhere takes effect without
// a restart).
func New(ctx context.Context, cfg *config.File, log *slog.Logger) (*Server, error) {
	if err := cfg.ValidateHSM(); err != nil {
		return nil, err
	}
	if err := cfg.ValidateServer(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, Registry: prometheus.NewRegistry(), reload: make(chan struct{}, 1)}
	s.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var err error
	if s.Token, err = hsm.Open(cfg.HSM); err != nil {
		return nil, err
	}
	for _, f := range s.Token.Restored() {
		log.Warn("restored an empty SoftHSM2 token file from tacline's copy (a process was killed while SoftHSM2 rewrote it at login)", "file", f)
	}
	var auditKey crypto.Signer
	if !cfg.Audit.Disabled {
		if auditKey, err = s.Token.Signer(cfg.Audit.KeyLabel); err != nil {
			s.Close()
			return nil, tacerr.Wrap(tacerr.HSMKeyNotFound, err, "audit checkpoint key %q: make it with `tacline hsm keygen --label %s --type p256`",
				cfg.Audit.KeyLabel, cfg.Audit.KeyLabel)
		}
	}
	if s.DB, err = store.Open(ctx, cfg.Database); err != nil {
		s.Close()
		return nil, err
	}
	if s.Audit, err = attachSinks(s.DB, cfg, auditKey); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.checkRollback(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if cfg.Register.URL != "" {
		m, err := register.NewMetrics(s.Registry, s.DB)
		if err != nil {
			s.Close()
			return nil, err
		}
		if s.Worker, err = register.NewWorker(s.DB, cfg.Register, m, log); err != nil {
			s.Close()
			return nil, err
		}
	}
	if cfg.Site.Name != "" {
		hq, err := site.NewHTTPClient(cfg.Site.HQURL, cfg.Site.Name, cfg.Site.CertFile, cfg.Site.KeyFile, cfg.Site.CAFile)
		if err != nil {
			s.Close()
			return nil, err
		}
		sc := cfg.Site
		if sc.CosignedCheckpoint == "" && cfg.Audit.PublishedCheckpoint != "" {
			sc.CosignedCheckpoint = cfg.Audit.PublishedCheckpoint + ".cosigned"
		}
		if s.Site, err = site.New(sc, s.DB, s.Audit, hq, s.Registry, log); err != nil {
			s.Close()
			return nil, err
		}
		// Rollback safety without headquarters: a ledger older than, or
		// forked from, HQ's cosigned checkpoint never issues.
		if err := s.Site.CheckCosigned(ctx); tacerr.Is(err, tacerr.SiteNotCurrent) {
			log.Error("this site refuses to issue", "err", err.Error())
		} else if err != nil {
			s.Close()
			return nil, err
		}
	}
	// Device issuers: loaded now, kept in step with the ledger by Run.
	s.issuers = newIssuers(s.DB, s.Token, cfg, log)
	if s.issuers.ra, err = openStepCA(ctx, cfg, s); err != nil {
		s.Close()
		return nil, err
	}
	if _, err := s.issuers.refresh(ctx, false); err != nil {
		s.Close()
		return nil, err
	}
	recs, err := s.DB.Issuers(ctx)
	if err == nil {
		err = checkClientCAs(recs, map[string][]string{"server.client_ca": cfg.Server.ClientCA, "server.mapped_ca": cfg.Server.MappedCA}, log)
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	if err := s.issuers.register(s.Registry); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.Registry.Register(&s.warm); err != nil {
		s.Close()
		return nil, err
	}
	if err := registerLedgerMetrics(s.Registry, s.DB); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.Registry.Register(opsCollector{s}); err != nil {
		s.Close()
		return nil, err
	}
	s.Service, err = provisioner.New(provisioner.Config{
		DB: s.DB, Issuers: s.issuers.issuanceSet(), Active: s.issuers.active, Manufacturer: cfg.Manufacturer, CSRRules: cfg.CSR,
		IntentTimeout: cfg.Provisioning.IntentTimeout, PreallocTimeout: cfg.Provisioning.PreallocationTimeout,
		SiteLeases: s.Site != nil, SiteReady: s.siteReady,
		Probe: func(ctx context.Context) error {
			if h := s.Token.Health(ctx); !h.OK {
				return tacerr.New(tacerr.HSMUnavailable, "HSM probe signature failed: %s", h.Err)
			}
			return nil
		},
		Log: log,
	})
	if err != nil {
		s.Close()
		return nil, err
	}
	if err := upstreamMetric(s.Registry, s.Service); err != nil {
		s.Close()
		return nil, err
	}
	// Authenticity checks, CRLs and OCSP (verify/online, verify/revocation).
	if s.Authority, err = online.NewAuthority(ctx, s.DB, s.issuers.revocationSet(), cfg.Authenticity.Online, cfg.Revocation, log); err != nil {
		s.Close()
		return nil, err
	}
	s.Authority.Publisher.UseResponderKeys(castore.Keys{Token: s.Token})
	s.issuers.mu.Lock()
	s.issuers.svc, s.issuers.auth = s.Service, &s.Authority
	s.issuers.mu.Unlock()
	served, err := api.WithAuthenticity(s.Service, s.Authority, cfg.Authenticity.API)
	if err != nil {
		s.Close()
		return nil, err
	}
	if s.API, err = api.New(cfg.Server, served, s.Registry, log); err != nil {
		s.Close()
		return nil, err
	}
	if s.stationCRL, err = stationCRL(cfg); err != nil {
		s.Close()
		return nil, err
	}
	if s.stationCRL != nil {
		if err := s.stationCRL.Refresh(ctx); err != nil {
			log.Warn("step-ca CRL not read at start-up; retrying", "err", err.Error())
		}
		s.API.SetRevocationChecker(s.stationCRL)
	}
	// Headquarters' side of the sites API (docs/sites.md): it answers
	// sites enrolled with `tacline site enroll`; HQ's witness key (Ed25519,
	// in the HSM) cosigns the site checkpoints it verified.
	var cosigner note.Signer
	if cfg.Audit.WitnessKeyLabel != "" {
		key, err := s.Token.Ed25519Signer(cfg.Audit.WitnessKeyLabel)
		if err != nil {
			s.Close()
			// The HSM's code stands (a lost session is hsm_unavailable, not
			// a missing key); a missing key's message names the command.
			return nil, tacerr.Prefixed(fmt.Sprintf("witness key %q (audit.witness_key_label)", cfg.Audit.WitnessKeyLabel), err, tacerr.HSMKeyNotFound)
		}
		if cosigner, err = audit.NewCosigner(cfg.Audit.Origin, key, nil); err != nil {
			s.Close()
			return nil, err
		}
	}
	hq, err := site.NewHQ(s.DB, cosigner, s.Registry)
	if err != nil {
		s.Close()
		return nil, err
	}
	hq.Policy = cfg.HQ.Lease
	s.API.SetSites(hq)
	if err := s.mountConsole(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// mountConsole serves the web console and the public check page on the
// API's listener (package console).
func (s *Server) mountConsole() error {
	var logKey string
	if v := s.Audit.Verifier(); v != nil {
		logKey = v.Key()
	}
	cc := console.Config{Gate: s.API, Ops: s.API.Services(), DB: s.DB, LogKey: logKey, Delivering: s.Worker != nil,
		Health: s.Token.Health, Gatherer: s.Registry, Log: s.log,
		Issuers: func() console.IssuerState {
			st := s.Issuers()
			return console.IssuerState{Active: st.Active, Unusable: st.Unusable}
		}}
	if err := s.cfg.Console.Apply(&cc); err != nil {
		return err
	}
	var err error
	if s.Console, err = console.New(cc); err != nil {
		return err
	}
	s.Console.Mount(s.API)
	return nil
}

// RefreshIssuers reads the ledger's issuers now, as the periodic refresh
// does (provisioning.issuer_refresh), and also retries the issuers whose
// key could not be found before. New issuers are loaded (their HSM key
// looked up once) and the active one switches atomically for new requests;
// an issuer that cannot be loaded is logged and left out, and the server
// keeps serving with what it has. It reports whether anything changed.
func (s *Server) RefreshIssuers(ctx context.Context) (bool, error) {
	return s.issuers.refresh(ctx, true)
}

// TriggerIssuerRefresh asks a running server to refresh its issuers at once
// (SIGHUP in `tacline serve`); it does not wait.
func (s *Server) TriggerIssuerRefresh() {
	select {
	case s.reload <- struct{}{}:
	default:
	}
}

// Issuers reports the server's device issuers: the one it issues under,
// the ledger's active one, the loaded ones and those it cannot use.
func (s *Server) Issuers() IssuerStatus { return s.issuers.status() }

// runIssuerRefresh refreshes the issuers every interval and when
// triggered, until ctx ends. A failed read of the ledger is logged and
// retried at the next tick.
func (s *Server) runIssuerRefresh(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		retry := false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.reload:
			retry = true
		}
		if _, err := s.issuers.refresh(ctx, retry); err != nil && ctx.Err() == nil {
			s.log.Warn("issuer refresh failed; retrying", "err", err.Error(), "code", string(tacerr.CodeOf(err)))
		}
	}
}

// Run serves until ctx ends, then shuts down gracefully. ready, if not nil,
// receives the listening address once the server accepts connections.
func (s *Server) Run(ctx context.Context, ready func(addr string)) error {
	ln, err := net.Listen("tcp", s.cfg.Server.Listen)
	if err != nil {
		return tacerr.Wrap(tacerr.Unavailable, err, "listen on %s", s.cfg.Server.Listen)
	}
	gcPercent, memLimit := s.cfg.Server.TuneRuntime()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go s.warmLedger(rctx)
	go s.Service.RunRecovery(rctx, s.cfg.Provisioning.RecoveryInterval)
	go s.runIssuerRefresh(rctx, s.cfg.Provisioning.IssuerRefresh)
	go s.runStationCRL(rctx)
	go s.Authority.Run(rctx)
	go s.Console.Run(rctx) // the console's error log: repeats left out of closed windows
	if !s.cfg.Audit.Disabled {
		go s.Audit.Run(rctx, s.log)
	}
	if s.Site != nil {
		go s.Site.Run(rctx)
	}
	if s.Worker != nil {
		go func() {
			if err := s.Worker.Run(rctx); err != nil && !errors.Is(err, context.Canceled) {
				s.log.Error("register delivery stopped", "err", err)
			}
		}()
	}
	rollback := make(chan error, 1)
	go s.watchRollback(rctx, rollback)
	errc := make(chan error, 1)
	go func() { errc <- s.API.Serve(rctx, ln) }()
	s.log.Info("tacline serving", "addr", ln.Addr().String(), "db", string(s.DB.Dialect()),
		"gc_percent", gcPercent, "memory_limit_bytes", memLimit)
	if ready != nil {
		ready(ln.Addr().String())
	}
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case err := <-rollback:
		// Stop serving at once: every further device would risk an IMEI
		// already on another device. The start-up check keeps it down.
		s.log.Error("stopping: the ledger went back behind the published audit checkpoint", "err", err.Error())
		cancel()
		<-errc
		return err
	case <-ctx.Done():
	}
	batches, members := s.DB.BatchStats()
	attrs := []any{"ledger_batches", batches, "ledger_batch_members", members}
	if s.Audit != nil {
		// How the audit appends found the head: guessed (one guarded
		// statement) or locked (read under the lock, after another
		// replica appended): replicas' contention at the head; and how
		// many appends read stored hashes (the head row's edge missing).
		guessed, locked := s.Audit.AppendStats()
		attrs = append(attrs, "audit_appends_guessed", guessed, "audit_appends_locked", locked,
			"audit_hash_reads", s.Audit.HashReads())
	}
	s.log.Info("tacline shutting down", attrs...)
	select {
	case err := <-errc:
		if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, context.Canceled) {
			return err
		}
	case <-time.After(15 * time.Second):
		return tacerr.New(tacerr.Unavailable, "shutdown timed out")
	}
	return nil
}

// siteReady is the provisioner's gate in site mode.
func (s *Server) siteReady() error { return s.Site.Ready() }

// Close releases the ledger and the HSM.
func (s *Server) Close() error {
	var errs []error
	if s.Console != nil {
		errs = append(errs, s.Console.Close())
	}
	if s.DB != nil {
		errs = append(errs, s.DB.Close())
	}
	if s.Token != nil {
		errs = append(errs, s.Token.Close())
	}
	return errors.Join(errs...)
}

// WriteReadyFile writes the listening address to path atomically (tests and
// the demo wait for it).
func WriteReadyFile(path, addr string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(addr+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
