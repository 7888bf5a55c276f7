// Package verifybench measures authenticity checks on a real throwaway
// environment (devenv: SoftHSM2 token, SQLite ledger, key ceremony, a
// server in this process and devices provisioned by the line simulator):
// offline and online checks per second with one worker and with one worker
// per core, the cost of the ECDSA verifications an offline check cannot
// avoid (each chain certificate's signature and the challenge signature)
// measured in the same run, and the time to sign a CRL of many revoked
// certificates in the HSM.
package verifybench

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/tacerr"
	"github.com/tacline/tacline/verify"
	"github.com/tacline/tacline/verify/revocation"
)

// Options tune Run.
type Options struct {
	Dir        string        // where the throwaway environment lives (removed after)
	Duration   time.Duration // per measured phase
	CRLEntries int           // revoked certificates in the CRL timing
	Workers    int           // the "all cores" phase (0: GOMAXPROCS)
}

// Rate is one throughput measurement.
type Rate struct {
	Workers   int     `json:"workers"`
	Ops       int64   `json:"ops"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_second"`
	MicrosOp  float64 `json:"micros_per_op_per_worker"`
}

// Result is what Run measured.
type Result struct {
	ChainCertificates int  `json:"chain_certificates"`
	Offline1          Rate `json:"offline_1_worker"`
	OfflineN          Rate `json:"offline_all_cores"`
	Online1           Rate `json:"online_1_worker"`
	OnlineN           Rate `json:"online_all_cores"`
	// ECDSA1 is the baseline: the signature verifications an offline check
	// must do (device certificate by the issuing CA, issuing CA by the
	// root, the challenge by the device key), nothing else.
	ECDSA1 Rate `json:"ecdsa_baseline_1_worker"`
	// OfflineCostRatio is the offline check's time per op over the
	// baseline's (target: at most 2).
	OfflineCostRatio float64 `json:"offline_cost_ratio"`
	CRLEntries       int     `json:"crl_entries"`
	CRLSeconds       float64 `json:"crl_seconds"`
	CRLBytes         int     `json:"crl_bytes"`
	CRLVerified      bool    `json:"crl_verified"`
}

// Run sets up the environment and measures.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Duration <= 0 {
		return nil, tacerr.Field(tacerr.InvalidInput, "duration", "must be positive")
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	dir, err := os.MkdirTemp(o.Dir, "bench-verify-")
	if err != nil {
		return nil, tacerr.Field(tacerr.InvalidInput, "dir", "cannot create a directory in %s: %v", o.Dir, err)
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	env, err := devenv.Setup(ctx, devenv.Options{Dir: filepath.Join(dir, "env"), Stations: 1})
	if err != nil {
		return nil, err
	}
	srv, url, stop, err := devenv.ServeInProcess(ctx, env)
	if err != nil {
		return nil, err
	}
	defer stop()
	devs, err := devenv.ProvisionDevices(ctx, env, url, 1, filepath.Join(dir, "keys"))
	if err != nil {
		return nil, err
	}
	dev := &device{imei: devs[0].IMEIs[0], chainPEM: devs[0].ChainPEM, key: devs[0].Key}
	if dev.chain, err = verify.ParseChainPEM([]byte(dev.chainPEM)); err != nil {
		return nil, err
	}
	res := &Result{ChainCertificates: len(dev.chain)}

	// Offline: parse the request as it arrives (PEM, hex, base64) and
	// check it against the root, as `tacline verify` does minus file reads.
	trust, err := verify.NewTrust(dev.chain[len(dev.chain)-1:])
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, 32)
	sig, err := factory.SignChallenge(dev.key, nonce)
	if err != nil {
		return nil, err
	}
	req := verify.Request{IMEI: dev.imei, Chain: dev.chainPEM, Nonce: hex.EncodeToString(nonce), Signature: base64.StdEncoding.EncodeToString(sig)}
	offline := func() error {
		in, err := req.Parse()
		if err != nil {
			return err
		}
		r, err := verify.Check(ctx, in, trust, nil, nil)
		if err == nil && r.Verdict != verify.Genuine {
			err = fmt.Errorf("offline check: %s %v", r.Verdict, r.Reasons)
		}
		return err
	}
	baseline := ecdsaBaseline(dev.chain, nonce, sig)
	if err := baseline(); err != nil {
		return nil, err
	}
	// The baseline and the offline check alternate in short rounds so that
	// both see the same machine load.
	if res.ECDSA1, res.Offline1, err = interleaved(ctx, baseline, offline, o.Duration); err != nil {
		return nil, err
	}
	res.OfflineCostRatio = res.Offline1.MicrosOp / res.ECDSA1.MicrosOp
	if res.OfflineN, err = measure(ctx, o.Workers, o.Duration, offline); err != nil {
		return nil, err
	}

	// Online: a challenge from the ledger, then the check with the ledger
	// (nonce consumed, certificate and IMEI binding read), in process.
	online := func() error {
		ch, err := srv.Authority.NewChallenge(ctx, "bench")
		if err != nil {
			return err
		}
		n, _ := hex.DecodeString(ch.Nonce)
		s, err := factory.SignChallenge(dev.key, n)
		if err != nil {
			return err
		}
		r, err := srv.Authority.Verify(ctx, verify.Request{IMEI: dev.imei, Chain: dev.chainPEM, Nonce: ch.Nonce, Signature: base64.StdEncoding.EncodeToString(s)})
		if err == nil && r.Verdict != verify.Genuine {
			err = fmt.Errorf("online check: %s %v", r.Verdict, r.Reasons)
		}
		return err
	}
	if res.Online1, err = measure(ctx, 1, o.Duration, online); err != nil {
		return nil, err
	}
	if res.OnlineN, err = measure(ctx, o.Workers, o.Duration, online); err != nil {
		return nil, err
	}

	// A CRL of many revoked certificates (synthetic serials), signed by
	// the device issuer's key in the HSM.
	if o.CRLEntries > 0 {
		iss := srv.Authority.Issuers()[0]
		start := time.Now()
		der, n, err := revocation.BuildCRL(iss, 1, start, start.Add(24*time.Hour), func(fn func(revocation.Entry) error) error {
			at := start.Add(-time.Hour)
			for i := range o.CRLEntries {
				if err := fn(revocation.Entry{SerialHex: fmt.Sprintf("%032x", uint64(i)*2654435761+1), At: at, Reason: "cloned"}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		res.CRLSeconds = time.Since(start).Seconds()
		res.CRLEntries, res.CRLBytes = int(n), len(der)
		l, err := x509.ParseRevocationList(der)
		res.CRLVerified = err == nil && l.CheckSignatureFrom(iss.Cert) == nil && len(l.RevokedCertificateEntries) == o.CRLEntries
	}
	return res, nil
}

type device struct {
	imei     string
	chainPEM string
	chain    []*x509.Certificate
	key      *ecdsa.PrivateKey
}

// ecdsaBaseline verifies, and only verifies, the signatures a check needs:
// each certificate by its issuer (not the self-signed root) and the
// challenge by the device key.
func ecdsaBaseline(chain []*x509.Certificate, nonce, sig []byte) func() error {
	return func() error {
		for i := 0; i+1 < len(chain); i++ {
			if err := chain[i+1].CheckSignature(chain[i].SignatureAlgorithm, chain[i].RawTBSCertificate, chain[i].Signature); err != nil {
				return tacerr.Wrap(tacerr.Internal, err, "baseline: certificate %d does not verify", i)
			}
		}
		h := sha256.Sum256(nonce)
		if !ecdsa.VerifyASN1(chain[0].PublicKey.(*ecdsa.PublicKey), h[:], sig) {
			return tacerr.New(tacerr.Internal, "baseline: challenge signature does not verify")
		}
		return nil
	}
}

// measure runs op on workers goroutines for d.
func measure(ctx context.Context, workers int, d time.Duration, op func() error) (Rate, error) {
	var n atomic.Int64
	var firstErr error
	var once sync.Once
	stop := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for time.Now().Before(stop) && ctx.Err() == nil {
				if err := op(); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return Rate{}, firstErr
	}
	return rate(workers, n.Load(), time.Since(start)), nil
}

// interleaved measures a and b on one worker in alternating 50 ms rounds
// for about d each.
func interleaved(ctx context.Context, a, b func() error, d time.Duration) (Rate, Rate, error) {
	var na, nb int64
	var ta, tb time.Duration
	const round = 50 * time.Millisecond
	for ta+tb < 2*d && ctx.Err() == nil {
		for _, x := range []struct {
			op func() error
			n  *int64
			t  *time.Duration
		}{{a, &na, &ta}, {b, &nb, &tb}} {
			start := time.Now()
			for time.Since(start) < round {
				if err := x.op(); err != nil {
					return Rate{}, Rate{}, err
				}
				*x.n++
			}
			*x.t += time.Since(start)
		}
	}
	return rate(1, na, ta), rate(1, nb, tb), nil
}

func rate(workers int, ops int64, d time.Duration) Rate {
	r := Rate{Workers: workers, Ops: ops, Seconds: d.Seconds()}
	if ops > 0 && d > 0 {
		r.PerSecond = float64(ops) / d.Seconds()
		r.MicrosOp = float64(workers) * d.Seconds() * 1e6 / float64(ops)
	}
	return r
}
