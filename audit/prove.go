package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// Proof file identifiers.
const (
	ProofFormat  = "tacline-audit-proof"
	ProofVersion = 1
)

// ProofBundle is the events of one IMEI with inclusion proofs against a
// signed checkpoint (`tacline audit prove`). VerifyProof checks it offline.
type ProofBundle struct {
	Format     string        `json:"format"`
	Version    int           `json:"version"`
	IMEI       string        `json:"imei"`
	LogKey     string        `json:"log_key"`
	Checkpoint string        `json:"checkpoint"` // the signed note
	Events     []ProvenEvent `json:"events"`
	// Pending counts this IMEI's events appended after the checkpoint; they
	// are provable once the next checkpoint is signed.
	Pending int `json:"pending"`
}

// ProvenEvent is one leaf with its inclusion proof.
type ProvenEvent struct {
	Index int64       `json:"index"`
	Leaf  []byte      `json:"leaf"`  // the encoded leaf (base64 in JSON)
	Event EventJSON   `json:"event"` // the leaf decoded, for people; must match Leaf
	Proof []tlog.Hash `json:"proof"` // RFC 6962 inclusion proof, base64 hashes
}

// EventJSON is a store.Event in JSON form.
type EventJSON struct {
	Type         string            `json:"type"`
	Time         time.Time         `json:"time"`
	Actor        string            `json:"actor,omitempty"`
	RequestID    string            `json:"request_id,omitempty"`
	Pool         string            `json:"pool,omitempty"`
	TAC          string            `json:"tac,omitempty"`
	IMEIs        []string          `json:"imeis,omitempty"`
	DeviceSerial string            `json:"device_serial,omitempty"`
	CertSerial   string            `json:"cert_serial,omitempty"`
	Reason       string            `json:"reason,omitempty"`
	Attrs        map[string]string `json:"attrs,omitempty"`
}

func eventJSON(e store.Event) EventJSON {
	return EventJSON{e.Type, e.Time, e.Actor, e.RequestID, e.Pool, e.TAC, e.IMEIs, e.DeviceSerial, e.CertSerial, e.Reason, e.Attrs}
}

// Prove returns the events that name the IMEI with inclusion proofs against
// the newest signed checkpoint.
func Prove(ctx context.Context, db *store.DB, imeiText string) (*ProofBundle, error) {
	m, err := imei.Parse(imeiText)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.InvalidIMEI, err, "--imei %q", imeiText)
	}
	cp, err := LatestCheckpoint(ctx, db)
	if err != nil {
		return nil, err
	}
	b := &ProofBundle{Format: ProofFormat, Version: ProofVersion, IMEI: m.String(), LogKey: cp.VerifierKey, Checkpoint: string(cp.Note), Events: []ProvenEvent{}}
	r := dbHashReader{ctx, db}
	err = db.AuditLeavesOf(ctx, m.String(), func(idx int64, data []byte) error {
		pe := ProvenEvent{Index: idx, Leaf: append([]byte(nil), data...)}
		if pe.Index >= cp.Size {
			b.Pending++
			return nil
		}
		e, err := DecodeEvent(pe.Leaf)
		if err != nil {
			return tacerr.Wrap(tacerr.LedgerInvariant, err, "audit leaf %d", pe.Index)
		}
		pe.Event = eventJSON(e)
		if pe.Proof, err = tlog.ProveRecord(cp.Size, pe.Index, r); err != nil {
			return tacerr.Wrap(tacerr.LedgerInvariant, err, "prove audit leaf %d", pe.Index)
		}
		b.Events = append(b.Events, pe)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// ProofResult is the outcome of VerifyProof (`tacline audit verify-proof
// --json`).
type ProofResult struct {
	Valid    bool   `json:"valid"`
	IMEI     string `json:"imei"`
	Events   int    `json:"events"`
	TreeSize int64  `json:"tree_size"`
	Reason   string `json:"reason"`
}

// VerifyProof checks a proof bundle offline: the checkpoint signature (with
// logKey, or the bundle's own key when logKey is empty), that every event
// names the IMEI and decodes to what the bundle shows, and every inclusion
// proof.
func VerifyProof(data []byte, logKey string) ProofResult {
	var res ProofResult
	fail := func(format string, args ...any) ProofResult {
		res.Valid, res.Reason = false, fmt.Sprintf(format, args...)
		return res
	}
	var b ProofBundle
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return fail("not a tacline proof file: %v", err)
	}
	if b.Format != ProofFormat || b.Version != ProofVersion {
		return fail("format %q version %d, this tacline reads %q version %d", b.Format, b.Version, ProofFormat, ProofVersion)
	}
	res.IMEI = b.IMEI
	key, err := ParseVerifierKey(b.LogKey)
	if err != nil {
		return fail("log_key: %v", err)
	}
	if logKey != "" {
		if key, err = ParseVerifierKey(logKey); err != nil {
			return fail("--log-key: %v", err)
		}
	}
	cp, err := OpenCheckpoint([]byte(b.Checkpoint), key)
	if err != nil {
		return fail("%v", err)
	}
	res.TreeSize = cp.Size
	for i, pe := range b.Events {
		e, err := DecodeEvent(pe.Leaf)
		if err != nil {
			return fail("event %d (index %d): %v", i, pe.Index, err)
		}
		if normJSON(eventJSON(e)) != normJSON(pe.Event) {
			return fail("event %d (index %d): the shown event differs from the signed leaf", i, pe.Index)
		}
		if !slices.ContainsFunc(e.IMEIs, func(s string) bool { return normIMEI(s) == b.IMEI }) {
			return fail("event %d (index %d) does not name IMEI %s", i, pe.Index, b.IMEI)
		}
		if err := tlog.CheckRecord(pe.Proof, cp.Size, cp.Root, pe.Index, tlog.RecordHash(pe.Leaf)); err != nil {
			return fail("event %d (index %d): the inclusion proof does not lead to the checkpoint's root: the event was changed or is not in the log", i, pe.Index)
		}
	}
	res.Events = len(b.Events)
	res.Valid = true
	return res
}

// normJSON round-trips through JSON so that equal events compare equal
// whatever their time zone or nil-versus-empty fields.
func normJSON(e EventJSON) string {
	e.Time = e.Time.UTC()
	b, _ := json.Marshal(e)
	return string(b)
}
