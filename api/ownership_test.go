package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/provisioner/provtest"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// The callers of the ownership matrix. Objects are made by station S1
// (factory F1, line L1, pool F1-A); S4 is another line of factory F1 (its
// pool F1-S only); S2 is factory F2.
var ownershipCallers = []string{"own", "line2", "factory2", "operator", "auditor", "regulator", "admin"}

// ownObject is what one cell acts on.
type ownObject struct {
	serial string   // a BOUND device of S1
	imeis  []string // its IMEIs, or a pre-allocated group of S1
}

// ownershipRows are the routes that name a device, an IMEI or a
// reservation: for each, how to make a fresh object of S1, the request of
// each caller on it, and what each caller gets: "ok" (2xx) or the problem
// code ("+imeis": the problem lists the device's IMEIs).
var ownershipRows = []struct {
	pattern string
	object  string // "device" or "prealloc"
	call    func(t *testing.T, o ownObject, who string) (method, path string, body any)
	want    map[string]string
}{
	{"POST " + wire.PathProvision, "device", func(t *testing.T, o ownObject, who string) (string, string, any) {
		product := map[string]string{"line2": "EX-S"}[who]
		if product == "" {
			product = "EX-1"
		}
		return "POST", wire.PathProvision, wire.ProvisionRequest{RequestID: "again-" + who + "-" + o.serial, DeviceSerial: o.serial, Product: product, CSR: string(provtest.NewDevice(t).CSR)}
	}, map[string]string{"own": "device_already_provisioned+imeis", "line2": "device_already_provisioned+imeis", "factory2": "device_already_provisioned",
		"operator": "forbidden", "auditor": "forbidden", "regulator": "forbidden", "admin": "forbidden"}},
	{"POST " + wire.PathAllocations, "", func(t *testing.T, o ownObject, who string) (string, string, any) {
		return "POST", wire.PathAllocations, wire.AllocationRequest{RequestID: "alloc-" + who, Pool: "F1-A", Count: 1}
	}, map[string]string{"own": "ok", "line2": "station_not_authorized", "factory2": "station_not_authorized",
		"operator": "forbidden", "auditor": "forbidden", "regulator": "forbidden", "admin": "forbidden"}},
	{"POST " + wire.PathBind, "prealloc", func(t *testing.T, o ownObject, who string) (string, string, any) {
		return "POST", wire.PathBind, wire.BindRequest{RequestID: "bind-" + who, IMEIs: o.imeis, DeviceSerial: "BOUND-BY-" + who, CSR: string(provtest.NewDevice(t).CSR)}
	}, map[string]string{"own": "ok", "line2": "ok", "factory2": "not_owner",
		"operator": "forbidden", "auditor": "forbidden", "regulator": "forbidden", "admin": "forbidden"}},
	{"POST " + wire.PathVoidIMEI, "prealloc", func(t *testing.T, o ownObject, who string) (string, string, any) {
		return "POST", "/v1/imeis/" + o.imeis[0] + "/void", wire.VoidRequest{Reason: "test"}
	}, map[string]string{"own": "ok", "line2": "ok", "factory2": "not_owner",
		"operator": "ok", "auditor": "forbidden", "regulator": "forbidden", "admin": "ok"}},
	{"POST " + wire.PathReissue, "device", func(t *testing.T, o ownObject, who string) (string, string, any) {
		return "POST", "/v1/devices/" + o.serial + "/reissue", wire.ReissueRequest{RequestID: "reissue-" + who, CSR: string(provtest.NewDevice(t).CSR)}
	}, map[string]string{"own": "ok", "line2": "ok", "factory2": "not_owner",
		"operator": "ok", "auditor": "forbidden", "regulator": "forbidden", "admin": "ok"}},
	{"POST " + wire.PathRevoke, "device", func(t *testing.T, o ownObject, who string) (string, string, any) {
		return "POST", "/v1/devices/" + o.serial + "/revoke", wire.RevokeRequest{Reason: "stolen"}
	}, map[string]string{"own": "forbidden", "line2": "forbidden", "factory2": "forbidden",
		"operator": "ok", "auditor": "forbidden", "regulator": "forbidden", "admin": "ok"}},
	{"GET " + wire.PathDevice, "device", func(t *testing.T, o ownObject, who string) (string, string, any) {
		return "GET", "/v1/devices/" + o.serial, nil
	}, map[string]string{"own": "ok", "line2": "ok", "factory2": "not_owner",
		"operator": "ok", "auditor": "ok", "regulator": "ok", "admin": "ok"}},
	{"GET " + wire.PathIMEI, "device", func(t *testing.T, o ownObject, who string) (string, string, any) {
		return "GET", "/v1/imeis/" + o.imeis[1], nil
	}, map[string]string{"own": "ok", "line2": "ok", "factory2": "not_owner",
		"operator": "ok", "auditor": "ok", "regulator": "ok", "admin": "ok"}},
}

// namesNoObject are the routes that name no device, IMEI or reservation,
// and why.
var namesNoObject = map[string]string{
	"GET " + wire.PathPools:   "lists pools; a station sees only its own (TestRealServiceBehaviour)",
	"GET " + wire.PathOpenAPI: "the document",
	"GET " + wire.PathMetrics: "aggregates only",
	"GET " + wire.PathHealthz: "public probe",
	"GET " + wire.PathReadyz:  "public probe",
	"POST " + PathChallenges:  "public authenticity check: answers about a certificate the caller holds",
	"POST " + PathVerify:      "public authenticity check: answers about a certificate the caller holds",
	"GET " + PathLookup:       "public register lookup (rate limited), no ledger details",
	"GET " + PathCRL:          "public CRL",
	"POST " + PathOCSP:        "public OCSP",
	"GET " + PathOCSPGet:      "public OCSP",
	// Sites (api/sites.go): a site acts for its own {site} only
	// (TestSitesAPI); no device, IMEI or reservation is named.
	"POST " + wire.PathSiteLeases: "a site asks for its own lease (TestSitesAPI)",
	"POST " + wire.PathSiteSync:   "a site ships its own events (TestSitesAPI)",
	"GET " + wire.PathSiteStatus:  "a site's status, for itself or operators (TestSitesAPI)",
}

// TestOwnershipCoversEveryRoute fails when a route is registered without
// its ownership rows (or a reason why it names no object).
func TestOwnershipCoversEveryRoute(t *testing.T) {
	rows := map[string]bool{}
	for _, r := range ownershipRows {
		rows[r.pattern] = true
		for _, who := range ownershipCallers {
			if r.want[who] == "" {
				t.Errorf("%s: no cell for caller %s", r.pattern, who)
			}
		}
	}
	registered := map[string]bool{}
	for _, rt := range routes {
		registered[rt.pattern] = true
		switch {
		case rows[rt.pattern] && namesNoObject[rt.pattern] != "":
			t.Errorf("route %s is both in the ownership rows and in namesNoObject", rt.pattern)
		case !rows[rt.pattern] && namesNoObject[rt.pattern] == "":
			t.Errorf("route %s has no ownership rows: add it to ownershipRows (or namesNoObject, with the reason)", rt.pattern)
		}
	}
	for p := range rows {
		if !registered[p] {
			t.Errorf("ownership row %s is not a registered route", p)
		}
	}
	for p := range namesNoObject {
		if !registered[p] {
			t.Errorf("namesNoObject %s is not a registered route", p)
		}
	}
}

// TestOwnershipMatrixRealService runs every cell of the ownership table
// against the real service over mTLS: own device, another line of the same
// factory, another factory, and every other role. A refusal leaves the
// ledger (rows, audit leaves, outbox) as it was.
func TestOwnershipMatrixRealService(t *testing.T) {
	rs := startReal(t, store.SQLite)
	ctx := context.Background()
	if err := rs.env.DB.EnrollStation(ctx, store.StationRecord{ID: "S4", Factory: "F1", Line: "L2", Pools: []string{"F1-S"}}, "test"); err != nil {
		t.Fatal(err)
	}
	clients := map[string]*http.Client{
		"own":      rs.as(t, ca.Station{ID: "S1"}),
		"line2":    rs.as(t, ca.Station{ID: "S4"}),
		"factory2": rs.as(t, ca.Station{ID: "S2"}),
	}
	for _, r := range ownershipCallers[3:] {
		clients[r] = rs.as(t, ca.Station{Roles: []string{r}})
	}
	n := 0
	makeObject := func(t *testing.T, kind string) ownObject {
		n++
		switch kind {
		case "device":
			out := rs.provision(t, clients["own"], fmt.Sprintf("own-setup-%d", n), fmt.Sprintf("OWN-%d", n))
			return ownObject{serial: out.DeviceSerial, imeis: out.IMEIs}
		case "prealloc":
			r := rs.do(t, clients["own"], "POST", wire.PathAllocations, wire.AllocationRequest{RequestID: fmt.Sprintf("own-alloc-%d", n), Pool: "F1-A", Count: 1})
			var al wire.AllocationResponse
			if err := json.Unmarshal(r.body, &al); err != nil || r.status != http.StatusCreated || len(al.Devices) != 1 {
				t.Fatalf("allocate: %d %s", r.status, r.body)
			}
			return ownObject{imeis: al.Devices[0]}
		}
		return ownObject{}
	}
	for _, row := range ownershipRows {
		for _, who := range ownershipCallers {
			t.Run(row.pattern+"/"+who, func(t *testing.T) {
				o := makeObject(t, row.object)
				method, path, body := row.call(t, o, who)
				before := storetest.ReadCounts(t, rs.env.DB)
				r := rs.do(t, clients[who], method, path, body)
				want := row.want[who]
				if want == "ok" {
					if r.status < 200 || r.status > 299 {
						t.Fatalf("%s %s as %s: %d, want 2xx: %s", method, path, who, r.status, r.body)
					}
					return
				}
				code, imeis := want, false
				if c, ok := strings.CutSuffix(want, "+imeis"); ok {
					code, imeis = c, true
				}
				if r.problem.Code != code || (r.status != 403 && r.status != 409) {
					t.Fatalf("%s %s as %s: %d %s, want %s", method, path, who, r.status, r.body, code)
				}
				if imeis != (len(r.problem.IMEIs) > 0) {
					t.Fatalf("%s %s as %s: problem IMEIs %v, want them listed: %v", method, path, who, r.problem.IMEIs, imeis)
				}
				if d := before.Diff(storetest.ReadCounts(t, rs.env.DB)); d != "" {
					t.Fatalf("%s %s as %s was refused but changed the ledger: %s", method, path, who, d)
				}
			})
		}
	}
}
