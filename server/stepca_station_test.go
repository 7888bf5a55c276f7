package server_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smallstep/certificates/ca"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/stepca"
	"github.com/tacline/tacline/stepca/stepcatest"
	"github.com/tacline/tacline/store"
)

// TestStepCAStation: a station whose identity comes from a real step-ca
// (one-time token, `tacline station bootstrap`'s Bootstrap) is mapped to
// its station by the URI SAN the provisioner template wrote; while two
// workers provision, its 6-second certificate is renewed twice at two
// thirds of its life and no request fails; once revoked at step-ca, the
// server answers 401 saying so.
func TestStepCAStation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env, err := devenv.Setup(ctx, devenv.Options{Dir: filepath.Join(t.TempDir(), "env"), Stations: 1})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := hsm.Open(env.Config.HSM)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	sca, opKey := stepcatest.StartStationCA(t, env.Config.HSM, tok, 6*time.Second)
	env.Config.Server.StepCAStationCA = []string{sca.RootFile}
	env.Config.Server.StepCACRL = sca.URL + "/1.0/crl"
	env.Config.Server.StepCACRLRefresh = 200 * time.Millisecond
	srv, url := serve(ctx, t, env)
	creds, err := factory.LoadCreds(env.CredsDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	sc := creds.Stations[0]
	other, err := srv.Service.Station(ctx, sc.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.DB.EnrollStation(ctx, store.StationRecord{ID: "SCA-1", Pools: other.Pools}, "test"); err != nil {
		t.Fatal(err)
	}
	ott, err := stepca.StationToken(sca.URL, "tacline-stations", opKey, "SCA-1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "SCA-1")
	if _, err := stepca.Bootstrap(ctx, sca.URL, sca.RootFile, ott, dir); err != nil {
		t.Fatalf("bootstrap: %v\n%s", err, sca.Log())
	}
	r, err := stepca.NewRenewer(dir)
	if err != nil {
		t.Fatal(err)
	}
	first := r.Leaf()
	renewed := make(chan *x509.Certificate, 8)
	r.OnRenew = func(c *x509.Certificate) { renewed <- c }
	rctx, stopRenew := context.WithCancel(ctx)
	defer stopRenew()
	go r.Run(rctx, t.Logf)
	client, err := factory.NewClient(factory.ClientConfig{ServerURL: url, CAFile: creds.ServerCAFile, MaxRetries: -1,
		GetClientCertificate: r.GetClientCertificate})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	provision := func(serial string) (*wire.ProvisionResponse, error) {
		return client.Provision(ctx, deviceRequest(t, serial, sc))
	}

	// A running line across two renewals.
	done := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []error
	count := 0
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				resp, err := provision(fmt.Sprintf("SCA-W%d-%04d", w, i))
				mu.Lock()
				if err != nil {
					failures = append(failures, err)
				} else {
					count++
					if d, _ := srv.DB.Device(ctx, resp.DeviceSerial); d == nil || d.Station != "SCA-1" {
						failures = append(failures, fmt.Errorf("device %s recorded for station %+v, want SCA-1", resp.DeviceSerial, d))
					}
				}
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	var last *x509.Certificate
	for i := 0; i < 2; i++ {
		select {
		case last = <-renewed:
		case <-time.After(30 * time.Second):
			t.Fatalf("renewal %d did not happen", i+1)
		}
	}
	time.Sleep(500 * time.Millisecond) // requests on the second renewed certificate
	close(done)
	wg.Wait()
	stopRenew()
	if len(failures) > 0 || count == 0 {
		t.Fatalf("%d devices provisioned; %d requests failed across the renewals, first: %v", count, len(failures), failures)
	}
	if last.SerialNumber.Cmp(first.SerialNumber) == 0 || last.URIs[0].String() != "urn:tacline:station:SCA-1" {
		t.Fatalf("renewed certificate %x %v", last.SerialNumber, last.URIs)
	}

	// Revoked at step-ca: 401 naming the cause once the CRL is read.
	cl, err := ca.NewClient(sca.URL, ca.WithRootFile(sca.RootFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := stepca.RevokeSerial(ctx, cl, "tacline-stations", opKey, r.Leaf().SerialNumber, "key compromise"); err != nil {
		t.Fatalf("revoke at step-ca: %v\n%s", err, sca.Log())
	}
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; ; i++ {
		_, err := provision(fmt.Sprintf("SCA-R-%04d", i))
		var ae *factory.APIError
		if errors.As(err, &ae) && ae.Status == http.StatusUnauthorized && strings.Contains(ae.Problem.Detail, "revoked at step-ca") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a revoked station certificate: %v, want 401 naming the revocation", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
