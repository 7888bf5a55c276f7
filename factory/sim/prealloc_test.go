package sim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"testing"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/tacerr"
)

// prealloc is the line server's pre-allocation state and faults.
type prealloc struct {
	groups   map[string]wire.AllocationResponse // by request id
	reserved map[string]bool                    // reserved, unbound IMEIs
	binds    int

	fail      bool // allocations get pool_exhausted
	outside   bool // allocations hand out IMEIs beyond the pool
	bindOther bool // binds certify fresh IMEIs instead of the group
}

func (s *lineServer) allocations(w http.ResponseWriter, r *http.Request) {
	var req wire.AllocationRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, wire.MaxBodyBytes)).Decode(&req); err != nil || req.Count < 1 {
		problem(w, 400, "invalid_input", "", false)
		return
	}
	if req.Count > wire.MaxAllocationDevices { // as the real server
		problem(w, 400, "invalid_input", "count", false)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := &s.alloc
	if a.groups == nil {
		a.groups, a.reserved = map[string]wire.AllocationResponse{}, map[string]bool{}
	}
	if resp, ok := a.groups[req.RequestID]; ok {
		writeJSON(w, resp)
		return
	}
	if a.fail {
		problem(w, 409, "pool_exhausted", "pool", false)
		return
	}
	if req.Pool != s.pool.Name {
		problem(w, 403, "station_not_authorized", "pool", false)
		return
	}
	if a.outside {
		s.next = 999_000
	}
	resp := wire.AllocationResponse{RequestID: req.RequestID, Pool: req.Pool}
	for range req.Count {
		var g []string
		for _, m := range s.take(max(req.IMEIsPerDevice, 1)) {
			g = append(g, m.String())
			a.reserved[m.String()] = true
		}
		resp.Devices = append(resp.Devices, g)
	}
	a.groups[req.RequestID] = resp
	w.WriteHeader(http.StatusCreated)
	writeJSON(w, resp)
}

func (s *lineServer) bind(w http.ResponseWriter, r *http.Request) {
	var req wire.BindRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, wire.MaxBodyBytes)).Decode(&req); err != nil {
		problem(w, 400, "invalid_input", "", false)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if resp, ok := s.byRequest[req.RequestID]; ok {
		writeJSON(w, resp)
		return
	}
	var ims []imei.IMEI
	for _, str := range req.IMEIs {
		m, err := imei.Parse(str)
		if err != nil || !s.alloc.reserved[m.String()] {
			problem(w, 409, "reservation_not_found", "imeis", false)
			return
		}
		ims = append(ims, m)
	}
	for _, m := range ims {
		delete(s.alloc.reserved, m.String())
	}
	s.alloc.binds++
	s.issueIdentity(w, req.RequestID, req.DeviceSerial, req.CSR, func() []imei.IMEI {
		if s.alloc.bindOther {
			return s.take(len(ims))
		}
		return ims
	})
}

func TestSimulatePreAllocate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		fault   func(*prealloc)
		code    tacerr.Code
		devices int
		byCode  map[string]int
	}{
		{name: "allocate then bind", devices: 8},
		{name: "allocation refused", fault: func(a *prealloc) { a.fail = true }, code: tacerr.DevicesFailed, byCode: map[string]int{"pool_exhausted": 8}},
		{name: "allocation outside the pool", fault: func(a *prealloc) { a.outside = true }, code: tacerr.VerificationFailed, byCode: map[string]int{"verification_failed": 8}},
		{name: "bound to other IMEIs than the group", fault: func(a *prealloc) { a.bindOther = true }, code: tacerr.VerificationFailed, byCode: map[string]int{"verification_failed": 8}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pki := newPKI(t)
			ls := newLineServer(t, pki)
			if tc.fault != nil {
				tc.fault(&ls.alloc)
			}
			srv := pki.Serve(t, ls)
			var out bytes.Buffer
			sum, err := Simulate(context.Background(), Config{
				ServerURL: srv.URL, ServerCAFile: pki.ServerCAFile, RootsFile: pki.RootsFile,
				Stations: stations(t, pki, 2, "widget"), Devices: 4, IMEICount: 2,
				PreAllocate: true, DevicesOut: &out,
			})
			if tacerr.CodeOf(err) != tc.code && !(tc.code == "" && err == nil) {
				t.Fatalf("err = %v, want code %q", err, tc.code)
			}
			if sum.Devices != tc.devices || sum.Failed != 8-tc.devices || !mapsEqual(sum.ErrorsByCode, tc.byCode) {
				t.Fatalf("summary = %+v, want %d devices, errors %v", sum, tc.devices, tc.byCode)
			}
			if tc.devices == 0 {
				return
			}
			// Every device was bound to a group of its station's allocation.
			ls.mu.Lock()
			defer ls.mu.Unlock()
			if len(ls.alloc.groups) != 2 || ls.alloc.binds != 8 || len(ls.alloc.reserved) != 0 {
				t.Errorf("server saw %d allocations, %d binds, %d IMEIs left reserved; want 2, 8, 0", len(ls.alloc.groups), ls.alloc.binds, len(ls.alloc.reserved))
			}
			var groups [][]string
			for _, a := range ls.alloc.groups {
				groups = append(groups, a.Devices...)
			}
			sc := bufio.NewScanner(&out)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				var dr DeviceRecord
				if err := json.Unmarshal(sc.Bytes(), &dr); err != nil {
					t.Fatal(err)
				}
				if !slices.ContainsFunc(groups, func(g []string) bool { return slices.Equal(g, dr.IMEIs) }) {
					t.Errorf("device %s has IMEIs %v, not an allocated group", dr.DeviceSerial, dr.IMEIs)
				}
			}
		})
	}
}

// TestSimulatePreAllocateSplits: a station pre-allocating more devices
// than one request may hold splits them into requests the server accepts,
// and every device is bound to its own group.
func TestSimulatePreAllocateSplits(t *testing.T) {
	t.Parallel()
	pki := newPKI(t)
	ls := newLineServer(t, pki)
	srv := pki.Serve(t, ls)
	const devices = 2*wire.MaxAllocationDevices + 1
	var out bytes.Buffer
	sum, err := Simulate(context.Background(), Config{
		ServerURL: srv.URL, ServerCAFile: pki.ServerCAFile, RootsFile: pki.RootsFile,
		Stations: stations(t, pki, 1, "widget"), Devices: devices, IMEICount: 1,
		PreAllocate: true, DevicesOut: &out,
	})
	if err != nil || sum.Devices != devices || sum.Failed != 0 {
		t.Fatalf("Simulate = %+v, %v; want %d devices, none failed", sum, err, devices)
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	var sizes []int
	for _, a := range ls.alloc.groups {
		sizes = append(sizes, len(a.Devices))
	}
	slices.Sort(sizes)
	if !slices.Equal(sizes, []int{1, wire.MaxAllocationDevices, wire.MaxAllocationDevices}) || ls.alloc.binds != devices || len(ls.alloc.reserved) != 0 {
		t.Fatalf("allocation requests of %v devices, %d binds, %d IMEIs left reserved", sizes, ls.alloc.binds, len(ls.alloc.reserved))
	}
	if got := bytes.Count(out.Bytes(), []byte("\n")); got != devices {
		t.Fatalf("%d device records, want %d", got, devices)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
