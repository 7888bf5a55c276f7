package wire

import (
	"strings"
	"testing"
	"time"
)

func req1() Request {
	return Request{Items: []Item{{IdempotencyKey: "k1", IMEI: "490154203237518", TAC: "49015420", Event: EventRegistered,
		DeviceID: "D1", Brand: "B", OccurredAt: time.Unix(0, 0)}}}
}

func TestDecodeResponse(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		ok         bool
	}{
		{"accepted", `{"results":[{"idempotency_key":"k1","status":"accepted","receipt_id":"R1"}]}`, true},
		{"conflict", `{"results":[{"idempotency_key":"k1","status":"conflict","reason":"held"}]}`, true},
		{"accepted without receipt", `{"results":[{"idempotency_key":"k1","status":"accepted"}]}`, false},
		{"wrong key", `{"results":[{"idempotency_key":"k2","status":"accepted","receipt_id":"R1"}]}`, false},
		{"too few", `{"results":[]}`, false},
		{"unknown status", `{"results":[{"idempotency_key":"k1","status":"ok","receipt_id":"R"}]}`, false},
		{"unknown field", `{"results":[],"x":1}`, false},
		{"garbage", `<html>`, false},
		{"trailing", `{"results":[{"idempotency_key":"k1","status":"accepted","receipt_id":"R1"}]} {}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeResponse(strings.NewReader(tc.body), req1())
			if (err == nil) != tc.ok {
				t.Fatalf("DecodeResponse = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	good := req1().Items[0]
	for _, tc := range []struct {
		name   string
		mutate func(*Item)
		field  string
	}{
		{"good", func(*Item) {}, ""},
		{"no key", func(i *Item) { i.IdempotencyKey = "" }, "idempotency_key"},
		{"14 digits", func(i *Item) { i.IMEI = "49015420323751" }, "imei"},
		{"tac mismatch", func(i *Item) { i.TAC = "49015421" }, "tac"},
		{"event", func(i *Item) { i.Event = "x" }, "event"},
		{"device", func(i *Item) { i.DeviceID = "a b" }, "device_id"},
		{"brand", func(i *Item) { i.Brand = "" }, "brand"},
		{"time", func(i *Item) { i.OccurredAt = time.Time{} }, "occurred_at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			it := good
			tc.mutate(&it)
			r := it.Validate()
			if tc.field == "" && r != "" || tc.field != "" && !strings.HasPrefix(r, tc.field+":") {
				t.Fatalf("Validate() = %q, want field %q", r, tc.field)
			}
		})
	}
}

func FuzzDecodeResponse(f *testing.F) {
	f.Add(`{"results":[{"idempotency_key":"k1","status":"accepted","receipt_id":"R1"}]}`)
	f.Add(`{"results":[{"idempotency_key":17`)
	f.Add(`null`)
	f.Fuzz(func(t *testing.T, body string) {
		resp, err := DecodeResponse(strings.NewReader(body), req1())
		if err == nil && len(resp.Results) != 1 {
			t.Fatalf("accepted %d results for 1 item", len(resp.Results))
		}
	})
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add(`{"items":[{"idempotency_key":"k","imei":"490154203237518","tac":"49015420","event":"registered","device_id":"D","brand":"B","model":"","occurred_at":"2026-01-01T00:00:00Z"}]}`)
	f.Add(`{"items":[]}`)
	f.Fuzz(func(t *testing.T, body string) {
		req, err := DecodeRequest(strings.NewReader(body))
		if err == nil {
			if len(req.Items) == 0 || len(req.Items) > MaxItems {
				t.Fatalf("accepted %d items", len(req.Items))
			}
			for _, it := range req.Items {
				_ = it.Validate()
			}
		}
	})
}
