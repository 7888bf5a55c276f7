package test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
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
// station keeps it across server crashes and resends it unchanged (same
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
}

// station is a simulated factory station driving the API directly with
// factory.Client, so that the test controls request ids and records every
// answer.
type station struct {
	creds    factory.StationCreds
	serverCA string
	roots    *x509.CertPool
	rng      *rand.Rand
	dropP    float64 // chance that a request whose attempt failed is given up (a station that lost its journal)
	max      int     // stop after this many devices

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

func newStation(creds factory.StationCreds, serverCA string, roots *x509.CertPool, seed uint64, idx int, dropP float64, max int) *station {
	return &station{creds: creds, serverCA: serverCA, roots: roots, rng: rand.New(rand.NewPCG(seed, uint64(idx))),
		dropP: dropP, max: max, devices: map[string]*factory.Device{}}
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
	return &pendingReq{device: dev, req: wire.ProvisionRequest{RequestID: factory.NewRequestID(), DeviceSerial: serial,
		Product: s.creds.Product, Pool: s.creds.Pool, CSR: string(csr)}}, nil
}

// retryableErr reports whether an attempt's error says the same request
// may succeed later: the server was down or crashed under it, or said so.
func retryableErr(err error) bool {
	var ae *factory.APIError
	if errors.As(err, &ae) {
		return ae.Retryable()
	}
	return tacerr.Is(err, tacerr.Unavailable)
}

// run provisions devices until stop is closed (or max devices are made),
// then finishes its pending request. While mayDrop is true, a request
// whose attempt failed may be given up (dropP).
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
			if stopped || s.made >= s.max {
				return
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
				s.pending = nil
				continue
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(5+s.rng.IntN(45)) * time.Millisecond):
			}
		default:
			s.failures = append(s.failures, fmt.Sprintf("request %s (device %s), attempt %d: %v", s.pending.req.RequestID, s.pending.req.DeviceSerial, s.pending.attempts, err))
			s.pending = nil
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
	s.answered = append(s.answered, answer{req: p.req, resp: *resp, device: p.device})
	s.pending = nil
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
