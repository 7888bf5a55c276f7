package sim_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/register/registertest"
	"github.com/tacline/tacline/register/sim"
	"github.com/tacline/tacline/register/wire"
)

func item(key, imei, event, device string) wire.Item {
	return wire.Item{IdempotencyKey: key, IMEI: imei, TAC: imei[:8], Event: event, DeviceID: device,
		Model: "M1", Brand: "Acme", OccurredAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// newServer starts a simulator whose every exchange is checked against
// register/openapi.yaml.
func newServer(t *testing.T, f sim.Faults) *httptest.Server {
	t.Helper()
	_, ts := registertest.Simulator(t, f)
	return ts
}

func post(t *testing.T, url string, items ...wire.Item) (int, []byte) {
	t.Helper()
	b, _ := json.Marshal(wire.Request{Items: items})
	resp, err := http.Post(url+wire.Path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func TestRegistrationResults(t *testing.T) {
	ts := newServer(t, sim.Faults{})
	a, b := "490154203237518", "490154203237526"
	steps := []struct {
		name   string
		item   wire.Item
		status string
	}{
		{"first registration", item("k1", a, wire.EventRegistered, "D1"), wire.StatusAccepted},
		{"same key again", item("k1", a, wire.EventRegistered, "D1"), wire.StatusDuplicate},
		{"other device", item("k2", a, wire.EventRegistered, "D2"), wire.StatusConflict},
		{"bad check digit", item("k3", "490154203237519", wire.EventRegistered, "D1"), wire.StatusInvalid},
		{"unknown event", item("k4", b, "stolen", "D1"), wire.StatusInvalid},
		{"device id with dash", item("k5", b, wire.EventRegistered, "D-1"), wire.StatusInvalid},
		{"revoke own", item("k6", a, wire.EventRevoked, "D1"), wire.StatusAccepted},
		{"register revoked again", item("k7", a, wire.EventRegistered, "D1"), wire.StatusInvalid},
		{"void never registered", item("k8", b, wire.EventVoided, "X9"), wire.StatusAccepted},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			code, body := post(t, ts.URL, st.item)
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, body)
			}
			resp, err := wire.DecodeResponse(bytes.NewReader(body), wire.Request{Items: []wire.Item{st.item}})
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.Results[0].Status; got != st.status {
				t.Fatalf("status %s (%s), want %s", got, resp.Results[0].Reason, st.status)
			}
		})
	}
	var s sim.Stats
	getJSON(t, ts.URL+"/admin/stats", &s)
	if s.Applied != 3 || s.Items["duplicate"] != 1 || s.Items["conflict"] != 1 || s.Requests["answered"] != int64(len(steps)) {
		t.Fatalf("stats %+v", s)
	}
	// Only registered IMEIs are on the list; a was revoked, b voided.
	resp, err := http.Get(ts.URL + "/v1/registration-list.csv")
	if err != nil {
		t.Fatal(err)
	}
	list, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.TrimSpace(string(list)) != sim.DIRBSHeader {
		t.Fatalf("list = %q", list)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func TestFaults(t *testing.T) {
	tests := []struct {
		name    string
		faults  sim.Faults
		outcome string
		applied int64
		check   func(t *testing.T, code int, body []byte, err error)
	}{
		{"fail", sim.Faults{FailRate: 1}, "failed", 0, func(t *testing.T, code int, body []byte, err error) {
			if err != nil || code != http.StatusServiceUnavailable {
				t.Fatalf("code %d err %v", code, err)
			}
		}},
		{"drop", sim.Faults{DropRate: 1}, "dropped", 1, func(t *testing.T, code int, body []byte, err error) {
			if err == nil {
				t.Fatalf("dropped request answered %d", code)
			}
		}},
		{"garbage", sim.Faults{GarbageRate: 1}, "garbage", 1, func(t *testing.T, code int, body []byte, err error) {
			if err != nil || code != http.StatusOK {
				t.Fatalf("code %d err %v", code, err)
			}
			if _, derr := wire.DecodeResponse(bytes.NewReader(body), wire.Request{Items: []wire.Item{{IdempotencyKey: "k"}}}); derr == nil {
				t.Fatal("garbage decoded as a response")
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := newServer(t, sim.Faults{})
			fb, _ := json.Marshal(tc.faults)
			req, _ := http.NewRequest(http.MethodPut, ts.URL+"/admin/faults", bytes.NewReader(fb))
			if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("set faults: %v %v", resp, err)
			}
			b, _ := json.Marshal(wire.Request{Items: []wire.Item{item("k1", "490154203237518", wire.EventRegistered, "D1")}})
			resp, err := http.Post(ts.URL+wire.Path, "application/json", bytes.NewReader(b))
			var code int
			var body []byte
			if err == nil {
				code = resp.StatusCode
				body, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			tc.check(t, code, body, err)
			var s sim.Stats
			getJSON(t, ts.URL+"/admin/stats", &s)
			if s.Requests[tc.outcome] != 1 || s.Applied != tc.applied {
				t.Fatalf("stats %+v, want one %s request and %d applied", s, tc.outcome, tc.applied)
			}
		})
	}
}

func TestFaultsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    sim.Faults
		ok   bool
	}{
		{"zero", sim.Faults{}, true},
		{"negative rate", sim.Faults{FailRate: -0.1}, false},
		{"rate above one", sim.Faults{DropRate: 1.5}, false},
		{"latency too long", sim.Faults{Latency: time.Hour}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.f.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v", err)
			}
		})
	}
}

func TestBadRequest(t *testing.T) {
	ts := newServer(t, sim.Faults{})
	resp, err := http.Post(ts.URL+wire.Path, "application/json", strings.NewReader(`{"items":[],"x":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d", resp.StatusCode)
	}
}
