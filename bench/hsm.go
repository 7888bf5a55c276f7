package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/policy"
	"github.com/tacline/tacline/provisioner/issuance"
)

// HSMOptions configure HSM.
type HSMOptions struct {
	// Config names a token to use; empty: a fresh SoftHSM2 token in a
	// temporary directory.
	Config   *hsm.Config
	Workers  []int // default 1, 2, 4
	Duration time.Duration
	Rounds   int // alternating raw/issuance rounds per worker count, default 1
	// Progress, if set, receives a line as each measurement starts.
	Progress io.Writer
}

// HSMResult is printed by `tacline bench hsm --json`.
type HSMResult struct {
	RawSignPerSecond  map[int]float64 `json:"raw_sign_per_second"`
	IssuancePerSecond map[int]float64 `json:"issuance_per_second"`
	BestWorkers       int             `json:"best_workers"`
	Ratio             float64         `json:"ratio"`
	// Process CPU time (user + system, SoftHSM2 included: it runs in the
	// process) per raw signature and per issuance, and their quotient at
	// BestWorkers: what the ratio would be if both could use every core. On
	// a machine shared with other work it moves much less than the rates.
	RawCPUMicrosPerSign       map[int]float64 `json:"raw_cpu_us_per_sign"`
	IssuanceCPUMicrosPerIssue map[int]float64 `json:"issuance_cpu_us_per_issuance"`
	CPURatio                  float64         `json:"cpu_ratio"`
	LoadAverage               string          `json:"load_average"`
	GCPercent                 int             `json:"gc_percent"` // the Go collector setting in force (server.gc_percent)
	IssuanceSteps             string          `json:"issuance_steps"`
	DurationPerMeasure        float64         `json:"duration_per_measure_seconds"`
	Rounds                    int             `json:"rounds"`
}

// HSM measures raw P-256 signatures on the token and full issuances (CSR
// check, TBS build, throwaway-key lint certificate, zlint, HSM signature,
// TBS identity and signature verification) with the same workers.
func HSM(ctx context.Context, o HSMOptions) (*HSMResult, error) {
	if len(o.Workers) == 0 {
		o.Workers = []int{1, 2, 4}
	}
	if o.Duration == 0 {
		o.Duration = 3 * time.Second
	}
	if o.Rounds < 1 {
		o.Rounds = 1
	}
	var cfg hsm.Config
	if o.Config != nil {
		cfg = *o.Config
	} else {
		dir, err := os.MkdirTemp("", "tacline-bench-hsm-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		if cfg, err = hsm.InitDev(dir, "bench", "1234"+randomSuffix()); err != nil {
			return nil, err
		}
	}
	tok, err := hsm.Open(cfg)
	if err != nil {
		return nil, err
	}
	defer tok.Close()
	label := "bench-issuer-" + randomSuffix()
	if _, err := tok.GenerateKey(label, hsm.ECP256); err != nil {
		return nil, err
	}
	signer, err := tok.Signer(label)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	root, err := ca.SelfSignedRoot(signer, pkix.Name{Organization: []string{"Bench"}, CommonName: "Bench Issuer"}, ca.UntilNoExpiry(now))
	if err != nil {
		return nil, err
	}
	is, err := issuance.New(issuance.Config{IssuerCert: root, Signer: signer, Profile: policy.DefaultProfile(), Lint: issuance.DefaultLintConfig()})
	if err != nil {
		return nil, err
	}
	// Device keys arrive as CSRs; their intake (parse, proof of possession)
	// is done once here: issuance is build + lint + HSM sign + verify.
	pubs := make([]any, 64)
	rules := policy.DefaultCSRRules()
	for i := range pubs {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
		if err != nil {
			return nil, err
		}
		if _, pubs[i], err = policy.ParseCSR(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), rules); err != nil {
			return nil, err
		}
	}
	var snr atomic.Uint32
	issueOne := func(i int) error {
		pub := pubs[i%len(pubs)]
		n := snr.Add(2) % 999998
		a, _ := imei.New(100100, n)
		b, _ := imei.New(100100, n+1)
		tok, err := is.Prepare(issuance.Request{DeviceSerial: "BENCH-1", Manufacturer: "Bench", Model: "B-1", IMEIs: []imei.IMEI{a, b},
			PublicKey: pub, NotBefore: now})
		if err != nil {
			return err
		}
		_, _, err = is.Issue(tok)
		return err
	}
	// One issuance before the clock: it waits for the one-time tables
	// (zlint's registry, the small-key table) so no measurement pays for them.
	if err := issueOne(0); err != nil {
		return nil, err
	}
	res := &HSMResult{RawSignPerSecond: map[int]float64{}, IssuancePerSecond: map[int]float64{}, DurationPerMeasure: o.Duration.Seconds(), Rounds: o.Rounds,
		IssuanceSteps: "Prepare (template, throwaway-key lint certificate, zlint) + Issue (HSM sign, TBS identity, signature verify); CSR intake done before the clock"}
	res.RawCPUMicrosPerSign, res.IssuanceCPUMicrosPerIssue = map[int]float64{}, map[int]float64{}
	res.LoadAverage = loadAverage()
	// Rounds alternate raw and issuance measurements, so that a neighbour's
	// load on a shared machine falls on both; rates are the mean over rounds.
	rawCPU, issCPU := map[int]time.Duration{}, map[int]time.Duration{}
	for r := 0; r < o.Rounds; r++ {
		for _, w := range o.Workers {
			if o.Progress != nil {
				fmt.Fprintf(o.Progress, "bench hsm: round %d/%d, %d worker(s): raw signatures, then issuances (%s each)\n", r+1, o.Rounds, w, o.Duration)
			}
			c0 := selfCPU()
			raw, err := hsm.BenchSign(ctx, signer, w, o.Duration)
			if err != nil {
				return nil, err
			}
			c1 := selfCPU()
			iss, err := rate(ctx, w, o.Duration, issueOne)
			if err != nil {
				return nil, err
			}
			rawCPU[w] += c1 - c0
			issCPU[w] += selfCPU() - c1
			res.RawSignPerSecond[w] += raw / float64(o.Rounds)
			res.IssuancePerSecond[w] += iss / float64(o.Rounds)
		}
	}
	total := o.Duration.Seconds() * float64(o.Rounds)
	for _, w := range o.Workers {
		res.RawCPUMicrosPerSign[w] = perOp(rawCPU[w], res.RawSignPerSecond[w]*total)
		res.IssuanceCPUMicrosPerIssue[w] = perOp(issCPU[w], res.IssuancePerSecond[w]*total)
	}
	for w, v := range res.IssuancePerSecond {
		if v > res.IssuancePerSecond[res.BestWorkers] || res.BestWorkers == 0 {
			res.BestWorkers = w
		}
	}
	if r := res.RawSignPerSecond[res.BestWorkers]; r > 0 {
		res.Ratio = res.IssuancePerSecond[res.BestWorkers] / r
	}
	if c := res.IssuanceCPUMicrosPerIssue[res.BestWorkers]; c > 0 {
		res.CPURatio = res.RawCPUMicrosPerSign[res.BestWorkers] / c
	}
	return res, nil
}

// rate runs op from w workers for d and returns operations per second.
func rate(ctx context.Context, w int, d time.Duration, op func(i int) error) (float64, error) {
	var n atomic.Int64
	var first atomic.Value
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < w; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := i; time.Now().Before(deadline) && ctx.Err() == nil; j += w {
				if err := op(j); err != nil {
					first.CompareAndSwap(nil, err)
					return
				}
				n.Add(1)
			}
		}(i)
	}
	wg.Wait()
	if err, ok := first.Load().(error); ok {
		return 0, err
	}
	return float64(n.Load()) / time.Since(start).Seconds(), nil
}

func randomSuffix() string {
	b := make([]byte, 4)
	rand.Read(b)
	const hexd = "0123456789abcdef"
	out := make([]byte, 8)
	for i, c := range b {
		out[2*i], out[2*i+1] = hexd[c>>4], hexd[c&15]
	}
	return string(out)
}

// selfCPU is this process's user + system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func perOp(cpu time.Duration, ops float64) float64 {
	if ops <= 0 {
		return 0
	}
	return float64(cpu.Microseconds()) / ops
}

// loadAverage is the first three fields of /proc/loadavg ("" elsewhere).
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
