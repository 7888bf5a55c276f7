package test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/server"
	"github.com/tacline/tacline/stepca/stepcatest"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

const stepCAKills = 6 // SIGKILLs of tacline serve per database

// TestStepCACrash: `tacline serve` with issuer kind stepca, SIGKILLed at
// random moments while two stations provision through a real step-ca,
// restarted each time; then a server with a 1s intent timeout recovers
// what the kills left. Judged against step-ca's own database: every
// certificate step-ca signed is either the one bound in tacline's ledger
// or revoked at step-ca (at most one live certificate per intent), every
// certificate tacline bound is step-ca's and not revoked, nothing is
// pending and `tacline ledger check` passes.
func TestStepCACrash(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) { runStepCACrash(t, d) })
	}
}

func runStepCACrash(t *testing.T, d store.Dialect) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env := setupEnv(t, ctx, d, 2)
	r := stepcatest.StartRA(t, env.Config.HSM, nil)
	sca := r.CA
	setSections(t, env.ConfigPath, map[string]any{
		"issuer": map[string]any{"kind": "stepca"},
		"stepca": map[string]any{"url": r.Config.URL, "root": r.Config.Root, "issuer_cert": r.Config.IssuerCert,
			"provisioner": r.Config.Provisioner, "key_label": r.Config.KeyLabel, "timeout": "5s"},
	})
	creds, err := factory.LoadCreds(env.CredsDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(env.Dir, "serve.log")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 13))
	answered, failed := 0, 0
	for kill := 0; kill < stepCAKills; kill++ {
		p, err := devenv.StartServer(ctx, taclineBin, env.ConfigPath, logPath)
		if err != nil {
			logTail(t, logPath, 40)
			t.Fatalf("start the server: %v", err)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var mu sync.Mutex
		for i, sc := range creds.Stations {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := factory.NewClient(factory.ClientConfig{ServerURL: p.URL, CertFile: sc.CertFile, KeyFile: sc.KeyFile,
					CAFile: creds.ServerCAFile, MaxRetries: -1, Timeout: 10 * time.Second})
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				for n := 0; ; n++ {
					select {
					case <-stop:
						return
					default:
					}
					dev, err := factory.NewDevice(fmt.Sprintf("K%d-S%d-%04d", kill, i, n))
					if err != nil {
						t.Error(err)
						return
					}
					csr, err := dev.CSR()
					if err != nil {
						t.Error(err)
						return
					}
					_, err = c.Provision(ctx, wireRequest(dev.Serial(), sc.Product, sc.Pool, csr))
					mu.Lock()
					if err == nil {
						answered++
					} else {
						if failed == 0 {
							t.Logf("first failed request: %v", err)
						}
						failed++
						var ae *factory.APIError
						if errors.As(err, &ae) && ae.Status != 503 {
							t.Errorf("provision %s: %v", dev.Serial(), err)
						}
					}
					mu.Unlock()
					if err != nil {
						return // the server is gone: wait for the next one
					}
				}
			}()
		}
		sleepCtx(ctx, time.Duration(1000+rng.IntN(1500))*time.Millisecond) // the first request needs ~0.5s (TLS to tacline and step-ca)
		p.Kill()
		close(stop)
		wg.Wait()
	}
	if answered == 0 {
		logTail(t, logPath, 40)
		t.Fatal("no device was provisioned between the kills")
	}

	// Recovery: a server with a 1s intent timeout abandons what the kills
	// left, revoking each abandoned serial at step-ca first.
	restore := shortenIntentTimeout(t, env.ConfigPath)
	p, err := devenv.StartServer(ctx, taclineBin, env.ConfigPath, logPath)
	if err != nil {
		logTail(t, logPath, 40)
		t.Fatalf("start the server: %v", err)
	}
	db, err := server.OpenLedger(ctx, env.Config)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	waitRecovered(t, ctx, db)
	if err := p.Stop(30 * time.Second); err != nil {
		t.Fatalf("the server did not stop cleanly: %v", err)
	}
	restore()
	res := tacline(t, time.Minute, "--config", env.ConfigPath, "ledger", "check")
	if res.code != 0 || !strings.Contains(res.stdout, "ledger OK") {
		t.Fatalf("tacline ledger check exited %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}

	// Judge against step-ca's database: each certificate step-ca issued is
	// the one tacline bound under that serial, or revoked at step-ca.
	sca.Stop()
	issued, revoked := stepCADB(t, filepath.Join(sca.Dir, "db"))
	bound := map[string]bool{}
	for s := range issued {
		n, _ := new(big.Int).SetString(s, 10)
		c, err := db.CertificateBySerial(ctx, hex.EncodeToString(n.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		bound[s] = c != nil
		if bound[s] == revoked[s] {
			t.Errorf("step-ca certificate serial %s: bound in tacline %v, revoked at step-ca %v; want exactly one", s, bound[s], revoked[s])
		}
	}
	nRevoked := 0
	for s := range issued {
		if revoked[s] {
			nRevoked++
		}
	}
	t.Logf("%d kills: %d answered, %d failed requests; step-ca issued %d certificates, %d bound, %d revoked",
		stepCAKills, answered, failed, len(issued), len(issued)-nRevoked, nRevoked)
}

// stepCADB reads step-ca's bbolt database: the serials (decimal) it
// issued and those it revoked.
func stepCADB(t *testing.T, path string) (issued, revoked map[string]bool) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	issued, revoked = map[string]bool{}, map[string]bool{}
	err = db.View(func(tx *bbolt.Tx) error {
		for name, m := range map[string]map[string]bool{"x509_certs": issued, "revoked_x509_certs": revoked} {
			b := tx.Bucket([]byte(name))
			if b == nil {
				continue
			}
			if err := b.ForEach(func(k, _ []byte) error { m[string(k)] = true; return nil }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return issued, revoked
}

// setSections replaces top-level sections of the configuration file.
func setSections(t *testing.T, path string, sections map[string]any) {
	t.Helper()
	editConfig(t, path, func(doc map[string]any) {
		for k, v := range sections {
			doc[k] = v
		}
	})
}

func wireRequest(serial, product, pool string, csr []byte) wire.ProvisionRequest {
	return wire.ProvisionRequest{RequestID: factory.NewRequestID(), DeviceSerial: serial, Product: product, Pool: pool, CSR: string(csr)}
}
