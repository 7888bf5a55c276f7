package audit

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// LeafVersion1 is the first byte of every leaf in encoding version 1, the
// only version so far. docs/audit-format.md describes it.
const LeafVersion1 = 0x01

// MaxLeafSize bounds one encoded leaf (1 MiB); longer leaves are refused on
// encoding and on decoding.
const MaxLeafSize = 1 << 20

// EncodeEvent returns the canonical version-1 encoding of e:
//
//	version  byte 0x01
//	type, then Time as int64 Unix microseconds (big-endian), then actor,
//	request_id, pool, tac as strings; imeis as a count and strings;
//	device_serial, cert_serial, reason as strings; attrs as a count and
//	key/value string pairs sorted by key (bytewise, no duplicates)
//
// where a string is a uint32 big-endian byte length and the bytes, and a
// count is a uint32 big-endian. Time is truncated to the microsecond.
func EncodeEvent(e store.Event) ([]byte, error) {
	return AppendEvent(nil, e)
}

// AppendEvent appends the encoding of e to dst (see EncodeEvent).
func AppendEvent(dst []byte, e store.Event) ([]byte, error) {
	start := len(dst)
	dst = append(dst, LeafVersion1)
	dst = appendString(dst, e.Type)
	dst = binary.BigEndian.AppendUint64(dst, uint64(e.Time.UnixMicro()))
	for _, s := range []string{e.Actor, e.RequestID, e.Pool, e.TAC} {
		dst = appendString(dst, s)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(e.IMEIs)))
	for _, s := range e.IMEIs {
		dst = appendString(dst, s)
	}
	for _, s := range []string{e.DeviceSerial, e.CertSerial, e.Reason} {
		dst = appendString(dst, s)
	}
	keys := make([]string, 0, len(e.Attrs))
	for k := range e.Attrs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(keys)))
	for _, k := range keys {
		dst = appendString(dst, k)
		dst = appendString(dst, e.Attrs[k])
	}
	if n := len(dst) - start; n > MaxLeafSize {
		return dst[:start], tacerr.New(tacerr.InvalidInput, "audit event %s is %d bytes encoded, more than the %d a leaf may hold; shorten its reason or attributes", e.Type, n, MaxLeafSize)
	}
	return dst, nil
}

func appendString(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}

// DecodeEvent parses a leaf made by EncodeEvent. It accepts exactly the
// canonical encodings: EncodeEvent(DecodeEvent(b)) == b for every b it
// accepts. Errors say at which byte offset the leaf is wrong.
func DecodeEvent(b []byte) (store.Event, error) {
	var e store.Event
	if err := decodeLeaf(b, &e); err != nil {
		return store.Event{}, err
	}
	return e, nil
}

// CheckLeaf reports why b is not a canonical leaf (nil if it is), as
// DecodeEvent would, without building the event (no allocation).
func CheckLeaf(b []byte) error { return decodeLeaf(b, nil) }

// decodeLeaf parses b into e, or only checks it when e is nil.
func decodeLeaf(b []byte, e *store.Event) error {
	if len(b) > MaxLeafSize {
		return fmt.Errorf("leaf is %d bytes, more than %d", len(b), MaxLeafSize)
	}
	if len(b) == 0 {
		return fmt.Errorf("leaf is empty")
	}
	if v := b[0]; v != LeafVersion1 {
		return fmt.Errorf("leaf version %#02x is unknown (this tacline reads version %#02x)", v, LeafVersion1)
	}
	d := decoder{b: b, off: 1, check: e == nil}
	var scratch store.Event
	if e == nil {
		e = &scratch
	}
	e.Type = d.str("type")
	t := int64(d.u64("time"))
	e.Actor = d.str("actor")
	e.RequestID = d.str("request_id")
	e.Pool = d.str("pool")
	e.TAC = d.str("tac")
	if n := d.count("imeis"); n > 0 {
		if !d.check {
			e.IMEIs = make([]string, n)
		}
		for i := range n {
			if s := d.str("imeis"); !d.check {
				e.IMEIs[i] = s
			}
		}
	}
	e.DeviceSerial = d.str("device_serial")
	e.CertSerial = d.str("cert_serial")
	e.Reason = d.str("reason")
	if n := d.count("attrs"); n > 0 {
		if !d.check {
			e.Attrs = make(map[string]string, n)
		}
		var prev []byte
		for i := range n {
			k := d.take(int(d.u32("attrs key")), "attrs key")
			v := d.str("attrs value")
			if d.err == nil && i > 0 && bytes.Compare(k, prev) <= 0 {
				d.err = fmt.Errorf("attrs key %q at byte %d is not after %q: keys must be sorted and unique", k, d.off, prev)
			}
			prev = k
			if !d.check {
				e.Attrs[string(k)] = v
			}
		}
	}
	if d.err != nil {
		return d.err
	}
	if d.off != len(b) {
		return fmt.Errorf("%d trailing bytes after the attrs at byte %d", len(b)-d.off, d.off)
	}
	if !d.check {
		e.Time = time.UnixMicro(t).UTC()
	}
	return nil
}

type decoder struct {
	b     []byte
	off   int
	err   error
	check bool // only check: str returns ""
}

func (d *decoder) need(n int, field string) bool {
	if d.err != nil {
		return false
	}
	if n < 0 || len(d.b)-d.off < n {
		d.err = fmt.Errorf("leaf ends inside field %s at byte %d (needs %d more bytes, has %d)", field, d.off, n, len(d.b)-d.off)
		return false
	}
	return true
}

// take returns the next n bytes, or nil (and sets d.err) if the leaf ends.
func (d *decoder) take(n int, field string) []byte {
	if !d.need(n, field) {
		return nil
	}
	b := d.b[d.off : d.off+n]
	d.off += n
	return b
}

func (d *decoder) u32(field string) uint32 {
	if b := d.take(4, field); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (d *decoder) u64(field string) uint64 {
	if b := d.take(8, field); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (d *decoder) str(field string) string {
	b := d.take(int(d.u32(field)), field)
	if d.check {
		return ""
	}
	return string(b)
}

// count reads an element count; each element takes at least 4 bytes, which
// bounds the count by what is left.
func (d *decoder) count(field string) int {
	n := d.u32(field)
	if d.err == nil && uint64(n)*4 > uint64(len(d.b)-d.off) {
		d.err = fmt.Errorf("field %s at byte %d claims %d elements, more than the leaf holds", field, d.off-4, n)
		return 0
	}
	return int(n)
}

// LeafHash is the RFC 6962 leaf hash of an encoded leaf:
// SHA-256(0x00 || leaf).
func LeafHash(leaf []byte) tlog.Hash { return tlog.RecordHash(leaf) }
