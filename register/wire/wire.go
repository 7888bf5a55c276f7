// Package wire holds the JSON types of the register API that tacline speaks
// (docs/register-api.md, register/openapi.yaml): the batch request of
// POST /v1/registrations and its per-item results. It is shared by the
// delivery worker (package register) and the register simulator
// (register/sim) so that both sides agree on one definition, and it holds
// the validation rules an item must pass, so the simulator and tacline's
// own tests reject the same things.
//
// The package promises: Decode* never panic on any input; every decoding
// failure names what was wrong.
package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/tacline/tacline/imei"
)

// Path is the URL path of the registration endpoint.
const Path = "/v1/registrations"

// Events an item reports.
const (
	EventRegistered = "registered" // the IMEI is bound to a device: register it
	EventVoided     = "voided"     // the IMEI is void forever (never shipped, or scrapped)
	EventRevoked    = "revoked"    // the device's certificate was revoked
	EventUpdated    = "updated"    // the device was reworked (new certificate, same IMEIs)
)

// Result statuses, one per item.
const (
	StatusAccepted  = "accepted"  // applied now
	StatusDuplicate = "duplicate" // same idempotency key already applied (nothing changed)
	StatusConflict  = "conflict"  // IMEI held by another device or manufacturer
	StatusInvalid   = "invalid"   // the item is malformed; reason says why
)

// MaxItems is the largest batch the API accepts.
const MaxItems = 1000

// Item is one IMEI event.
type Item struct {
	IdempotencyKey string    `json:"idempotency_key"`
	IMEI           string    `json:"imei"` // 15 digits with check digit
	TAC            string    `json:"tac"`  // 8 digits, the IMEI's first 8
	Event          string    `json:"event"`
	DeviceID       string    `json:"device_id"`
	Model          string    `json:"model"`
	Brand          string    `json:"brand"`
	OccurredAt     time.Time `json:"occurred_at"`
}

// Request is the body of POST /v1/registrations.
type Request struct {
	Items []Item `json:"items"`
}

// Result is the outcome of one item.
type Result struct {
	IdempotencyKey string `json:"idempotency_key"`
	Status         string `json:"status"`
	ReceiptID      string `json:"receipt_id,omitempty"`
	Reason         string `json:"reason,omitempty"`
}

// Response is the body of a 200 answer to POST /v1/registrations: one
// result per item, in the request's order.
type Response struct {
	Results []Result `json:"results"`
}

// Validate checks one item and returns the reason it is invalid, or "".
func (it Item) Validate() string {
	switch {
	case it.IdempotencyKey == "" || len(it.IdempotencyKey) > 128:
		return "idempotency_key: required, at most 128 characters"
	case len(it.IMEI) != 15:
		return "imei: must be 15 digits (TAC, serial number, check digit)"
	}
	m, err := imei.Parse(it.IMEI)
	if err != nil {
		return "imei: " + err.Error()
	}
	switch {
	case it.TAC != m.TACString():
		return fmt.Sprintf("tac: %q is not the first 8 digits of imei %s", it.TAC, it.IMEI)
	case it.Event != EventRegistered && it.Event != EventVoided && it.Event != EventRevoked && it.Event != EventUpdated:
		return fmt.Sprintf("event: %q is not one of registered, voided, revoked, updated", it.Event)
	case it.DeviceID == "" || len(it.DeviceID) > MaxDeviceID || !alnum(it.DeviceID):
		return fmt.Sprintf("device_id: required, 1 to %d letters and digits", MaxDeviceID)
	case it.Brand == "":
		return "brand: required"
	case it.OccurredAt.IsZero():
		return "occurred_at: required (RFC 3339 time)"
	}
	return ""
}

func alnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// maxBody bounds a request or response body read by either side.
const maxBody = 8 << 20

// DecodeRequest reads a request body strictly (unknown fields are errors).
func DecodeRequest(r io.Reader) (Request, error) {
	var req Request
	if err := decodeStrict(r, &req); err != nil {
		return Request{}, err
	}
	if len(req.Items) == 0 {
		return Request{}, fmt.Errorf("items: at least one item is required")
	}
	if len(req.Items) > MaxItems {
		return Request{}, fmt.Errorf("items: %d items, at most %d per batch", len(req.Items), MaxItems)
	}
	return req, nil
}

// DecodeResponse reads a response to req and checks that it answers every
// item exactly once, in order, with a known status. A reply that does not
// is an error: the caller must treat the whole batch as undelivered.
func DecodeResponse(r io.Reader, req Request) (Response, error) {
	var resp Response
	if err := decodeStrict(r, &resp); err != nil {
		return Response{}, fmt.Errorf("register reply is not a valid response: %w", err)
	}
	if len(resp.Results) != len(req.Items) {
		return Response{}, fmt.Errorf("register reply has %d results for %d items", len(resp.Results), len(req.Items))
	}
	for i, res := range resp.Results {
		if res.IdempotencyKey != req.Items[i].IdempotencyKey {
			return Response{}, fmt.Errorf("register reply result %d is for key %q, want %q", i, res.IdempotencyKey, req.Items[i].IdempotencyKey)
		}
		switch res.Status {
		case StatusAccepted, StatusDuplicate:
			if res.ReceiptID == "" {
				return Response{}, fmt.Errorf("register reply result %d: status %s without receipt_id", i, res.Status)
			}
		case StatusConflict, StatusInvalid:
		default:
			return Response{}, fmt.Errorf("register reply result %d: unknown status %q", i, res.Status)
		}
	}
	return resp, nil
}

func decodeStrict(r io.Reader, v any) error {
	body, err := io.ReadAll(io.LimitReader(r, maxBody+1))
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if len(body) > maxBody {
		return fmt.Errorf("body larger than %d bytes", maxBody)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode JSON: %w", err)
	}
	if dec.More() {
		return fmt.Errorf("decode JSON: trailing data after the object")
	}
	return nil
}
