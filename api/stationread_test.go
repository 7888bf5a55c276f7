package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/provisioner/provtest"
	"github.com/tacline/tacline/store"
)

// stationReads is the real provisioner with the API's own station reads
// (Provisioner.Station) counted.
type stationReads struct {
	*provisioner.Service
	n atomic.Int32
}

func (s *stationReads) Station(ctx context.Context, id string) (provisioner.Station, error) {
	s.n.Add(1)
	return s.Service.Station(ctx, id)
}

// stationReadServer serves the real provisioner over d with the API's own
// station reads counted.
func stationReadServer(t *testing.T, d store.Dialect) (*realServer, *stationReads) {
	env := provtest.New(t, d)
	p := &stationReads{Service: env.Service}
	pki := newPKI(t)
	caFile := pki.write(t, "env-station-ca.pem", ca.ChainPEM(env.StationCA))
	return &realServer{testServer: startServer(t, pki, p, func(c *Config) { c.ClientCA = []string{caFile} }), env: env}, p
}

// enrollS7 enrolls station S7 with the serial of a certificate it returns
// a client of: another certificate naming S7 is a replaced one.
func enrollS7(t *testing.T, rs *realServer) *http.Client {
	t.Helper()
	key := genKey(t)
	cert, _, err := ca.StationCert(rs.env.StationCA, rs.env.StationKey, key.Public(), ca.Station{ID: "S7"}, ca.ValidFor(time.Now(), time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.env.DB.EnrollStation(context.Background(), store.StationRecord{ID: "S7", Factory: "F1", Line: "L1", Pools: []string{"F1-A"}, CertSerial: cert.SerialNumber.Text(16)}, "test"); err != nil {
		t.Fatal(err)
	}
	return rs.client(&tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert})
}

// TestProvisionReadsStationOnce: a provisioning request authenticates its
// station in the use case's one ledger read (the station's record with the
// request check), not in a read of the API's own before it; the station's
// verdict still comes first (replaced certificate, disabled on the very
// next request, never enrolled) and a refused request reserves nothing.
func TestProvisionReadsStationOnce(t *testing.T) {
	for _, d := range []store.Dialect{store.SQLite, store.Postgres} {
		t.Run(string(d), func(t *testing.T) { testProvisionReadsStationOnce(t, d) })
	}
}

func testProvisionReadsStationOnce(t *testing.T, d store.Dialect) {
	rs, p := stationReadServer(t, d)
	env, ctx := rs.env, context.Background()
	s1 := rs.as(t, ca.Station{ID: "S1"})
	provision := func(c *http.Client, reqID, serial string) response {
		t.Helper()
		return rs.do(t, c, "POST", wire.PathProvision, wire.ProvisionRequest{RequestID: reqID, DeviceSerial: serial, Product: "EX-1", CSR: string(provtest.NewDevice(t).CSR)})
	}
	nothingFor := func(reqID string) {
		t.Helper()
		if is, err := env.DB.IssuanceByRequestID(ctx, reqID); err != nil || is != nil {
			t.Fatalf("refused request %s left intent %+v (%v)", reqID, is, err)
		}
	}

	first := wire.ProvisionRequest{RequestID: "o-1", DeviceSerial: "SN-O1", Product: "EX-1", CSR: string(provtest.NewDevice(t).CSR)}
	if r := rs.do(t, s1, "POST", wire.PathProvision, first); r.status != 201 {
		t.Fatalf("provision: %d %s", r.status, r.body)
	}
	if n := p.n.Load(); n != 0 {
		t.Fatalf("the API read the station %d time(s) besides the use case's read", n)
	}

	// A station enrolled with its certificate's serial: another
	// certificate naming it is refused before anything is reserved.
	current := enrollS7(t, rs)
	if r := provision(rs.as(t, ca.Station{ID: "S7"}), "o-2", "SN-O2"); r.status != 401 || !strings.Contains(r.problem.Detail, "replaced") {
		t.Fatalf("replaced certificate: %d %+v", r.status, r.problem)
	}
	nothingFor("o-2")
	if r := provision(current, "o-3", "SN-O3"); r.status != 201 {
		t.Fatalf("current certificate: %d %s", r.status, r.body)
	}

	// Disabled: refused on its very next request, replays included.
	if err := env.DB.DisableStation(ctx, "S1", "test"); err != nil {
		t.Fatal(err)
	}
	if r := provision(s1, "o-4", "SN-O4"); r.status != 403 || r.problem.Code != "forbidden" {
		t.Fatalf("disabled station: %d %+v", r.status, r.problem)
	}
	nothingFor("o-4")
	if r := rs.do(t, s1, "POST", wire.PathProvision, first); r.status != 403 {
		t.Fatalf("disabled station's replay: %d %+v", r.status, r.problem)
	}
	// Never enrolled.
	if r := provision(rs.as(t, ca.Station{ID: "S99"}), "o-5", "SN-O5"); r.status != 401 || r.problem.Code != "unauthorized" {
		t.Fatalf("unknown station: %d %+v", r.status, r.problem)
	}
	nothingFor("o-5")
	if n := p.n.Load(); n != 0 {
		t.Fatalf("the API read the station %d time(s) besides the use case's read", n)
	}

	// A body the API refuses before the use case runs: the station's
	// verdict first, from the API's own read.
	if r := rs.do(t, s1, "POST", wire.PathProvision, []byte(`{"request_id":`)); r.status != 403 || r.problem.Code != "forbidden" {
		t.Fatalf("disabled station, bad body: %d %+v", r.status, r.problem)
	}
	if n := p.n.Load(); n != 1 {
		t.Fatalf("the API read the station %d time(s) for a request the use case never saw, want 1", n)
	}
}

// TestBindReadsStationOnce: a bind authenticates its station in the use
// case's one ledger read (the station's record with the request check),
// as provisioning does; the station's verdict still comes first (replaced
// certificate, disabled on the very next request, never enrolled) and a
// refused bind reserves nothing and leaves its group RESERVED.
func TestBindReadsStationOnce(t *testing.T) {
	for _, d := range []store.Dialect{store.SQLite, store.Postgres} {
		t.Run(string(d), func(t *testing.T) { testBindReadsStationOnce(t, d) })
	}
}

func testBindReadsStationOnce(t *testing.T, d store.Dialect) {
	rs, p := stationReadServer(t, d)
	env, ctx := rs.env, context.Background()
	allocate := func(c *http.Client, reqID string, n int) [][]string {
		t.Helper()
		r := rs.do(t, c, "POST", wire.PathAllocations, wire.AllocationRequest{RequestID: reqID, Pool: "F1-A", Count: n})
		var al wire.AllocationResponse
		if err := json.Unmarshal(r.body, &al); err != nil || r.status != 201 {
			t.Fatalf("allocate: %d %s", r.status, r.body)
		}
		return al.Devices
	}
	bind := func(c *http.Client, reqID, serial string, group []string) response {
		t.Helper()
		return rs.do(t, c, "POST", wire.PathBind, wire.BindRequest{RequestID: reqID, IMEIs: group, DeviceSerial: serial, CSR: string(provtest.NewDevice(t).CSR)})
	}
	// The API's own station reads since the last call.
	var seen int32
	apiReads := func() int32 {
		n := p.n.Load()
		defer func() { seen = n }()
		return n - seen
	}
	refused := func(reqID string, group []string) {
		t.Helper()
		if is, err := env.DB.IssuanceByRequestID(ctx, reqID); err != nil || is != nil {
			t.Fatalf("refused bind %s left intent %+v (%v)", reqID, is, err)
		}
		for _, s := range group {
			m, err := imei.Parse(s)
			if err != nil {
				t.Fatal(err)
			}
			if rec, err := env.DB.LookupIMEI(ctx, m); err != nil || rec.State != store.StateReserved {
				t.Fatalf("refused bind %s: IMEI %s is %s (%v), want RESERVED", reqID, s, rec.State, err)
			}
		}
	}

	s1 := rs.as(t, ca.Station{ID: "S1"})
	groups := allocate(s1, "al-1", 4)
	apiReads()
	first := wire.BindRequest{RequestID: "b-1", IMEIs: groups[0], DeviceSerial: "SN-B1", CSR: string(provtest.NewDevice(t).CSR)}
	if r := rs.do(t, s1, "POST", wire.PathBind, first); r.status != 201 {
		t.Fatalf("bind: %d %s", r.status, r.body)
	}
	if r := rs.do(t, s1, "POST", wire.PathBind, first); r.status != 200 {
		t.Fatalf("bind replay: %d %s", r.status, r.body)
	}
	if n := apiReads(); n != 0 {
		t.Fatalf("the API read the station %d time(s) in two binds besides the use case's read", n)
	}

	// A station enrolled with its certificate's serial: another
	// certificate naming it is refused before anything is reserved.
	current := enrollS7(t, rs)
	s7groups := allocate(current, "al-7", 2)
	apiReads()
	if r := bind(rs.as(t, ca.Station{ID: "S7"}), "b-7", "SN-B7", s7groups[0]); r.status != 401 || !strings.Contains(r.problem.Detail, "replaced") {
		t.Fatalf("replaced certificate: %d %+v", r.status, r.problem)
	}
	refused("b-7", s7groups[0])
	if r := bind(current, "b-8", "SN-B8", s7groups[1]); r.status != 201 {
		t.Fatalf("current certificate: %d %s", r.status, r.body)
	}

	// Disabled: refused on its very next request, replays included.
	if err := env.DB.DisableStation(ctx, "S1", "test"); err != nil {
		t.Fatal(err)
	}
	if r := bind(s1, "b-2", "SN-B2", groups[1]); r.status != 403 || r.problem.Code != "forbidden" {
		t.Fatalf("disabled station: %d %+v", r.status, r.problem)
	}
	refused("b-2", groups[1])
	if r := rs.do(t, s1, "POST", wire.PathBind, first); r.status != 403 {
		t.Fatalf("disabled station's replay: %d %+v", r.status, r.problem)
	}
	// Never enrolled.
	if r := bind(rs.as(t, ca.Station{ID: "S99"}), "b-3", "SN-B3", groups[2]); r.status != 401 || r.problem.Code != "unauthorized" {
		t.Fatalf("unknown station: %d %+v", r.status, r.problem)
	}
	refused("b-3", groups[2])
	if n := apiReads(); n != 0 {
		t.Fatalf("the API read the station %d time(s) besides the use case's read", n)
	}

	// A body the API refuses before the use case runs: the station's
	// verdict first, from the API's own read.
	if r := rs.do(t, s1, "POST", wire.PathBind, []byte(`{"request_id":`)); r.status != 403 || r.problem.Code != "forbidden" {
		t.Fatalf("disabled station, bad body: %d %+v", r.status, r.problem)
	}
	if n := apiReads(); n != 1 {
		t.Fatalf("the API read the station %d time(s) for a bind the use case never saw, want 1", n)
	}
	refused("b-4", groups[3])
}
