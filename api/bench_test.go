package api

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/ca"
)

// BenchmarkHandlerProvision measures the HTTP layer alone for one
// provisioning request (identity, station check, role check, decoding,
// response encoding, metrics, JSON access log), without TLS and with a
// provisioner that answers at once.
func BenchmarkHandlerProvision(b *testing.B) {
	pki := newPKI(b)
	fake := newFake(b, pki)
	fake.addStation("F1-L1-S01", false)
	srv, err := New(pki.config(), fake, prometheus.NewRegistry(), slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	cert := pki.clientCert(b, ca.Station{ID: "F1-L1-S01"})
	state := &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert.Leaf, pki.stationCA, pki.root}}}
	body, err := json.Marshal(wire.ProvisionRequest{RequestID: "r1", DeviceSerial: "SN1", Product: "EX-1", CSR: testCSR})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("POST", wire.PathProvision, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.TLS = state
			w := httptest.NewRecorder()
			srv.ServeHTTP(w, req)
			if w.Code != http.StatusCreated {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
	b.StopTimer()
	// Wall time suffers when the machine is shared; CPU time per request
	// is the figure to compare with the server's budget per device.
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-us/op")
}

// cpuTime is the process's user+system CPU time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
