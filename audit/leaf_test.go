package audit

import (
	"bytes"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/store"
)

func sampleEvent() store.Event {
	return store.Event{
		Type:         store.EventIMEIBound,
		Time:         time.Date(2026, 11, 27, 8, 30, 0, 123456000, time.UTC),
		Actor:        "station-7",
		RequestID:    "req-1",
		Pool:         "p1",
		TAC:          "49015420",
		IMEIs:        []string{"490154203237518", "490154203237526"},
		DeviceSerial: "SN-1",
		CertSerial:   "0a1b",
		Attrs:        map[string]string{"z": "last", "a": "first"},
	}
}

func TestEncodeEventGolden(t *testing.T) {
	// A fixed vector for docs/audit-format.md: a minimal event.
	e := store.Event{Type: "pool.created", Time: time.UnixMicro(1), Pool: "p", Attrs: map[string]string{"k": "v"}}
	got, err := EncodeEvent(e)
	if err != nil {
		t.Fatal(err)
	}
	want := "01" + "0000000c" + hex_("pool.created") + "0000000000000001" +
		"00000000" + "00000000" + "00000001" + "70" + "00000000" + // actor, request_id, pool "p", tac
		"00000000" + // imeis
		"00000000" + "00000000" + "00000000" + // device_serial, cert_serial, reason
		"00000001" + "00000001" + "6b" + "00000001" + "76" // attrs k=v
	if hex.EncodeToString(got) != want {
		t.Fatalf("encoding\n got %x\nwant %s", got, want)
	}
	const wantHash = "d0buTcF+orXsURgG2d3lYhLVnUb198f0URj1KvQsb/Q="
	if h := LeafHash(got).String(); h != wantHash {
		t.Errorf("leaf hash %s, want %s (update docs/audit-format.md if the encoding changed on purpose)", h, wantHash)
	}
}

func hex_(s string) string { return hex.EncodeToString([]byte(s)) }

func TestEventRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		e    store.Event
	}{
		{"full", sampleEvent()},
		{"empty", store.Event{Time: time.UnixMicro(0).UTC()}},
		{"negative time", store.Event{Type: "x", Time: time.UnixMicro(-5).UTC()}},
		{"unicode and newlines", store.Event{Type: "config.changed", Time: time.UnixMicro(7).UTC(), Reason: "zweite\nZeile — ü", Attrs: map[string]string{"": "empty key", "ü": ""}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := EncodeEvent(tc.e)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeEvent(b)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(got, tc.e) {
				t.Fatalf("round trip\n got %+v\nwant %+v", got, tc.e)
			}
		})
	}
}

func TestEncodeEventSortsAttrs(t *testing.T) {
	a := sampleEvent()
	b := sampleEvent()
	b.Attrs = map[string]string{"a": "first", "z": "last"}
	ea, _ := EncodeEvent(a)
	eb, _ := EncodeEvent(b)
	if !bytes.Equal(ea, eb) {
		t.Fatal("same attrs encode differently")
	}
	if i, j := bytes.Index(ea, []byte("first")), bytes.Index(ea, []byte("last")); i > j {
		t.Fatal("attrs not sorted by key")
	}
}

func TestEncodeEventTooLarge(t *testing.T) {
	e := sampleEvent()
	e.Reason = strings.Repeat("x", MaxLeafSize)
	if _, err := EncodeEvent(e); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("got %v, want a size error", err)
	}
}

func TestDecodeEventErrors(t *testing.T) {
	good, _ := EncodeEvent(sampleEvent())
	unsorted, _ := EncodeEvent(store.Event{Attrs: map[string]string{"a": "1", "b": "2"}})
	// swap key names "a" and "b" in place: keys now b, a
	i := bytes.Index(unsorted, []byte("a"))
	j := bytes.Index(unsorted, []byte("b"))
	unsorted[i], unsorted[j] = 'b', 'a'
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"version", append([]byte{0x02}, good[1:]...), "version 0x02"},
		{"truncated", good[:len(good)-3], "ends inside field attrs"},
		{"trailing", append(append([]byte{}, good...), 0), "trailing"},
		{"huge count", append(append([]byte{1}, make([]byte, 28)...), 0xff, 0xff, 0xff, 0xff), "claims"},
		{"unsorted attrs", unsorted, "sorted"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeEvent(tc.b)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func FuzzDecodeEvent(f *testing.F) {
	good, _ := EncodeEvent(sampleEvent())
	f.Add(good)
	empty, _ := EncodeEvent(store.Event{})
	f.Add(empty)
	f.Add([]byte{1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEvent(b)
		if cerr := CheckLeaf(b); (cerr == nil) != (err == nil) || (err != nil && cerr.Error() != err.Error()) {
			t.Fatalf("CheckLeaf %v, DecodeEvent %v", cerr, err)
		}
		if err != nil {
			return
		}
		again, err := EncodeEvent(e)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("not canonical:\n in %x\nout %x", b, again)
		}
	})
}
