package server_test

import (
	"context"
	"testing"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/server"
)

// deviceRequest is a request, with a new request id, to provision a new
// device (its own key and CSR) of serial at station sc.
func deviceRequest(t *testing.T, serial string, sc factory.StationCreds) wire.ProvisionRequest {
	t.Helper()
	dev, err := factory.NewDevice(serial)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := dev.CSR()
	if err != nil {
		t.Fatal(err)
	}
	return wire.ProvisionRequest{RequestID: factory.NewRequestID(), DeviceSerial: dev.Serial(), Product: sc.Product, Pool: sc.Pool, CSR: string(csr)}
}

// serve runs env's server in this process until the test ends and
// returns it with its URL; stopping it with an error fails the test.
func serve(ctx context.Context, t *testing.T, env *devenv.Env) (*server.Server, string) {
	t.Helper()
	srv, url, stop, err := devenv.ServeInProcess(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("stop the server: %v", err)
		}
	})
	return srv, url
}
