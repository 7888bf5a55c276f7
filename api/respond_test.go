package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/api/wire"
)

// provisionAnswer is a provisioning response of the usual size: a
// certificate and a chain of two, in PEM.
func provisionAnswer() wire.ProvisionResponse {
	pemOf := func(n int) string { return certPEM(bytes.Repeat([]byte{0x30, 0x82, 0xa5}, n)) }
	return wire.ProvisionResponse{DeviceSerial: "SN-1", IMEIs: []string{"490154203237518", "490154203237526"},
		Certificate: pemOf(200), Chain: pemOf(190) + pemOf(170), CertificateSerial: "0a1b", IssuedAt: time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)}
}

// TestRespondWritesJSONWithoutCopies: a JSON answer is json.Marshal's bytes
// and a newline, with its length and headers, and encoding it allocates
// less than the body's own size (json.Marshal's copy of the body and the
// append of the newline allocated more than twice that).
func TestRespondWritesJSONWithoutCopies(t *testing.T) {
	s := &Server{}
	body := provisionAnswer()
	want, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, '\n')
	rec := httptest.NewRecorder()
	if st := s.respond(rec, httptest.NewRequest(http.MethodPost, wire.PathProvision, nil), http.StatusCreated, body); st != http.StatusCreated {
		t.Fatalf("status %d", st)
	}
	if got := rec.Body.Bytes(); !bytes.Equal(got, want) {
		t.Fatalf("body\n%s\nwant\n%s", got, want)
	}
	h := rec.Result().Header
	if h.Get("Content-Type") != "application/json" || h.Get("Content-Length") != strconv.Itoa(len(want)) || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("headers %v", h)
	}

	if raceEnabled {
		t.Log("allocations not checked: the race detector's sync.Pool drops buffers on purpose (make test runs this test again without -race)")
		return
	}
	w := &discardWriter{h: http.Header{}}
	r := httptest.NewRequest(http.MethodPost, wire.PathProvision, nil)
	s.respond(w, r, http.StatusCreated, body) // the pool's first buffer
	const n = 50
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for i := 0; i < n; i++ {
		clear(w.h)
		s.respond(w, r, http.StatusCreated, body)
	}
	runtime.ReadMemStats(&m1)
	if per := (m1.TotalAlloc - m0.TotalAlloc) / n; per >= uint64(len(want)) {
		t.Fatalf("%d bytes allocated per %d-byte answer, want fewer than the body", per, len(want))
	}
}

// discardWriter is a ResponseWriter that keeps nothing but its header.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// TestCertPEMAllocatesOnce: the PEM form is written into its one string,
// with no intermediate base64 copy.
func TestCertPEMAllocatesOnce(t *testing.T) {
	der := bytes.Repeat([]byte{0x30}, 650)
	if n := testing.AllocsPerRun(20, func() { _ = certPEM(der) }); n != 1 {
		t.Fatalf("%v allocations per certificate, want 1", n)
	}
	if !strings.HasSuffix(certPEM(der), "-----END CERTIFICATE-----\n") {
		t.Fatal("no PEM trailer")
	}
}
