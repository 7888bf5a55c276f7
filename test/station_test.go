package test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/tacerr"
)

// serverRef is where the server currently listens; the crash loop moves it
// to a new port on every restart.
type serverRef struct {
	mu  sync.Mutex
	url string
	gen int
}

func (r *serverRef) set(url string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.url = url
	r.gen++
}

func (r *serverRef) get() (string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.url, r.gen
}

// pendingReq is a request a station has sent and not yet had answered. The
// station journals it before the first attempt and, after every failed
// attempt, takes it back from the journal and resends it unchanged (same
// request id, same body) until it gets an answer.
type pendingReq struct {
	req      wire.ProvisionRequest
	device   *factory.Device // the device key the CSR was made with
	attempts int
	failed   bool // an attempt failed (the server crashed under it or was down)
}

// answer is what a station received for one request.
type answer struct {
	req    wire.ProvisionRequest
	resp   wire.ProvisionResponse
	device *factory.Device
	// afterFailure: an earlier attempt failed (the server was down or
	// crashed under it), so the answer is a replay of the request id.
	afterFailure bool
}

// station is a simulated factory station driving the API directly with
// factory.Client, so that the test controls request ids and records every
// answer.
type station struct {
	creds    factory.StationCreds
	journal  string // the pending request, written before it is sent
	serverCA string
	roots    *x509.CertPool
	rng      *rand.Rand
	dropP    float64       // chance that a request whose attempt failed is given up (a station that lost its journal)
	max      int           // stop after this many devices (0: no limit)
	think    time.Duration // at most this long between two devices (random)

	client    *factory.Client
	clientGen int
	allowed   []factory.PoolRange

	pending  *pendingReq
	made     int
	devices  map[string]*factory.Device // every device this station made, by serial
	answered []answer
	dropped  []pendingReq // given up, never answered
	failures []string     // answers that are neither success nor retryable, and verification failures
	retries  int
}

func newStation(creds factory.StationCreds, journalDir, serverCA string, roots *x509.CertPool, seed uint64, idx int, dropP float64, think time.Duration) *station {
	return &station{creds: creds, journal: filepath.Join(journalDir, creds.ID+".pending.json"), serverCA: serverCA, roots: roots,
		rng:   rand.New(rand.NewPCG(seed, uint64(idx))),
		dropP: dropP, think: think, devices: map[string]*factory.Device{}}
}

// clientFor returns a client of the server's current incarnation.
func (s *station) clientFor(ref *serverRef) (*factory.Client, error) {
	url, gen := ref.get()
	if s.client != nil && s.clientGen == gen {
		return s.client, nil
	}
	if s.client != nil {
		s.client.Close()
	}
	// No retries inside the client: the station loop retries itself, so it
	// can follow the server to its new port.
	c, err := factory.NewClient(factory.ClientConfig{ServerURL: url, CertFile: s.creds.CertFile, KeyFile: s.creds.KeyFile,
		CAFile: s.serverCA, Timeout: 20 * time.Second, MaxRetries: -1})
	if err != nil {
		return nil, err
	}
	s.client, s.clientGen = c, gen
	return c, nil
}

// newRequest makes a device (fresh key, CSR) and the request for it.
func (s *station) newRequest() (*pendingReq, error) {
	s.made++
	serial := fmt.Sprintf("CR-%s-%05d", s.creds.ID, s.made)
	dev, err := factory.NewDevice(serial)
	if err != nil {
		return nil, err
	}
	csr, err := dev.CSR()
	if err != nil {
		return nil, err
	}
	s.devices[serial] = dev
	p := &pendingReq{device: dev, req: wire.ProvisionRequest{RequestID: factory.NewRequestID(), DeviceSerial: serial,
		Product: s.creds.Product, Pool: s.creds.Pool, CSR: string(csr)}}
	key, err := dev.KeyPEM()
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(journalEntry{Request: p.req, DeviceKey: string(key)})
	if err != nil {
		return nil, err
	}
	tmp := s.journal + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return nil, err
	}
	return p, os.Rename(tmp, s.journal)
}

// journalEntry is a station's journal: the request it waits for and the
// key of the device the CSR was made with.
type journalEntry struct {
	Request   wire.ProvisionRequest `json:"request"`
	DeviceKey string                `json:"device_key"` // PKCS#8 PEM
}

// reload takes the pending request back from the journal, as a station
// restarted after the failure would.
func (s *station) reload() error {
	data, err := os.ReadFile(s.journal)
	if err != nil {
		return err
	}
	var j journalEntry
	if err := json.Unmarshal(data, &j); err != nil {
		return fmt.Errorf("journal %s: %v", s.journal, err)
	}
	key, err := factory.ParseDeviceKey([]byte(j.DeviceKey))
	if err != nil {
		return fmt.Errorf("journal %s: %v", s.journal, err)
	}
	dev, err := factory.NewDeviceWithKey(j.Request.DeviceSerial, key)
	if err != nil {
		return err
	}
	if j.Request != s.pending.req || !key.PublicKey.Equal(s.pending.device.Public()) {
		return fmt.Errorf("journal %s does not hold the pending request %s", s.journal, s.pending.req.RequestID)
	}
	s.pending.req, s.pending.device = j.Request, dev
	return nil
}

// settle ends the pending request (answered, failed or given up).
func (s *station) settle() {
	s.pending = nil
	if err := os.Remove(s.journal); err != nil {
		s.failures = append(s.failures, err.Error())
	}
}

// retryableErr reports whether an attempt's error says the same request
// may succeed later: the server was down or crashed under it, or said so.
func retryableErr(err error) bool {
	var ae *factory.APIError
	if errors.As(err, &ae) {
		return ae.Retryable()
	}
	return tacerr.IsRetryable(err) // a network failure; not a TLS refusal
}

// run provisions devices until stop is closed (or max devices are made),
// then finishes its pending request. Until stop is closed, a request whose
// first attempt failed is given up with probability dropP, as by a station
// that lost its journal; it is never sent again.
func (s *station) run(ctx context.Context, ref *serverRef, stop <-chan struct{}) {
	stopped := false
	for {
		if !stopped {
			select {
			case <-stop:
				stopped = true
			default:
			}
		}
		if s.pending == nil {
			if stopped || (s.max > 0 && s.made >= s.max) {
				return
			}
			if s.think > 0 {
				sleepCtx(ctx, time.Duration(s.rng.Int64N(int64(s.think))))
			}
			p, err := s.newRequest()
			if err != nil {
				s.failures = append(s.failures, err.Error())
				return
			}
			s.pending = p
		}
		if ctx.Err() != nil {
			s.failures = append(s.failures, fmt.Sprintf("request %s (device %s) never answered: %v", s.pending.req.RequestID, s.pending.req.DeviceSerial, ctx.Err()))
			return
		}
		err := s.attempt(ctx, ref)
		switch {
		case err == nil:
		case retryableErr(err):
			s.retries++
			first := !s.pending.failed
			s.pending.failed = true
			if first && !stopped && s.rng.Float64() < s.dropP {
				s.dropped = append(s.dropped, *s.pending)
				s.settle() // the journal is lost with it
				continue
			}
			if err := s.reload(); err != nil {
				s.failures = append(s.failures, err.Error())
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(5+s.rng.IntN(45)) * time.Millisecond):
			}
		default:
			s.failures = append(s.failures, fmt.Sprintf("request %s (device %s), attempt %d: %v", s.pending.req.RequestID, s.pending.req.DeviceSerial, s.pending.attempts, err))
			s.settle()
		}
	}
}

// attempt sends the pending request once. A success is verified and
// recorded; a verification failure is recorded as a failure.
func (s *station) attempt(ctx context.Context, ref *serverRef) error {
	c, err := s.clientFor(ref)
	if err != nil {
		return err
	}
	if s.allowed == nil {
		list, err := c.Pools(ctx)
		if err != nil {
			return err
		}
		if s.allowed, err = factory.PoolRanges(list, nil); err != nil {
			return err
		}
	}
	p := s.pending
	p.attempts++
	resp, err := c.Provision(ctx, p.req)
	if err != nil {
		return err
	}
	if err := factory.VerifyIssued(resp, s.roots, p.device, s.allowed); err != nil {
		s.failures = append(s.failures, fmt.Sprintf("request %s (device %s): the answer fails the station's checks: %v", p.req.RequestID, p.req.DeviceSerial, err))
	}
	s.answered = append(s.answered, answer{req: p.req, resp: *resp, device: p.device, afterFailure: p.failed})
	s.settle()
	return nil
}

// loadRoots reads the device roots (+ intermediates) a station trusts.
func loadRoots(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s holds no certificate", path)
	}
	return pool, nil
}
