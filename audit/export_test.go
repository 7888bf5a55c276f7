package audit

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

type tarEntry struct {
	name string
	data []byte
}

func readTar(t *testing.T, b []byte) []tarEntry {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	var es []tarEntry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return es
		}
		if err != nil {
			t.Fatal(err)
		}
		d, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, tarEntry{h.Name, d})
	}
}

func writeTar(t *testing.T, es []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		if err := writeEntry(tw, e.name, e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func splitRecords(d []byte) [][]byte {
	var rs [][]byte
	for len(d) > 0 {
		n := binary.BigEndian.Uint32(d)
		rs = append(rs, append([]byte{}, d[4:4+n]...))
		d = d[4+n:]
	}
	return rs
}

func joinRecords(rs [][]byte) []byte {
	var b []byte
	for _, r := range rs {
		b = binary.BigEndian.AppendUint32(b, uint32(len(r)))
		b = append(b, r...)
	}
	return b
}

// editRecords rewrites the records of the one events entry of es.
func editRecords(t *testing.T, es []tarEntry, f func([][]byte) [][]byte) []tarEntry {
	t.Helper()
	out := append([]tarEntry{}, es...)
	for i, e := range out {
		if strings.HasPrefix(e.name, entryEvents) {
			out[i].data = joinRecords(f(splitRecords(e.data)))
			return out
		}
	}
	t.Fatal("no events entry")
	return nil
}

func replaceEntry(es []tarEntry, name string, data []byte) []tarEntry {
	out := append([]tarEntry{}, es...)
	for i := range out {
		if out[i].name == name {
			out[i].data = data
		}
	}
	return out
}

func export(t *testing.T, db *store.DB, o ExportOptions) []byte {
	t.Helper()
	var buf bytes.Buffer
	st, err := Export(context.Background(), db, &buf, o)
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	if st.Bytes != int64(buf.Len()) {
		t.Fatalf("stats say %d bytes, wrote %d", st.Bytes, buf.Len())
	}
	return buf.Bytes()
}

func TestExportTampering(t *testing.T) {
	t.Parallel()
	db, l := openLog(t, store.SQLite)
	emit(t, db, "a", 0, 20, 7)
	if _, err := l.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	logKey := l.Verifier().Key()
	good := export(t, db, ExportOptions{})
	es := readTar(t, good)

	other, _ := NewNoteSigner(testOrigin, newKey(t))
	cp, err := OpenCheckpoint(es[2].data, l.Verifier())
	if err != nil {
		t.Fatal(err)
	}
	forged, _ := signCheckpoint(Checkpoint{Origin: cp.Origin, Size: cp.Size, Root: cp.Root}, other)

	tests := []struct {
		name   string
		file   []byte
		logKey string
		want   string // empty: valid
	}{
		{"untouched", good, "", ""},
		{"untouched with trusted key", good, logKey, ""},
		{"one byte of one event changed", writeTar(t, editRecords(t, es, func(rs [][]byte) [][]byte {
			rs[7][len(rs[7])-1] ^= 0x01 // the last byte of its last attribute value
			return rs
		})), logKey, "root hash recomputed from the events"},
		{"event made malformed", writeTar(t, editRecords(t, es, func(rs [][]byte) [][]byte {
			rs[4][0] = 0x07
			return rs
		})), logKey, "event 4: leaf version 0x07"},
		{"event dropped", writeTar(t, editRecords(t, es, func(rs [][]byte) [][]byte {
			return append(rs[:5:5], rs[6:]...)
		})), logKey, "1 events are missing"},
		{"event inserted", writeTar(t, editRecords(t, es, func(rs [][]byte) [][]byte {
			return append(rs[:5:5], append([][]byte{rs[5]}, rs[5:]...)...)
		})), logKey, "more events than the signed checkpoint's 20"},
		{"two events reordered", writeTar(t, editRecords(t, es, func(rs [][]byte) [][]byte {
			rs[2], rs[3] = rs[3], rs[2]
			return rs
		})), logKey, "root hash recomputed from the events"},
		{"file truncated", good[:len(good)/2], logKey, "truncated"},
		{"last events removed", writeTar(t, editRecords(t, es, func(rs [][]byte) [][]byte {
			return rs[:17]
		})), logKey, "3 events are missing"},
		{"checkpoint signed by another key", writeTar(t, replaceEntry(es, entryCheckpoint, forged.Note)), logKey, "not signed by the log key"},
		{"checkpoint by another key, export's own key", writeTar(t, replaceEntry(es, entryCheckpoint, forged.Note)), "", "not signed by the log key"},
		{"checkpoint and log.pub replaced", writeTar(t, replaceEntry(replaceEntry(es, entryCheckpoint, forged.Note), entryLogKey, []byte(other.Verifier().Key()))), logKey, "not the trusted key"},
		{"checkpoint body altered", writeTar(t, replaceEntry(es, entryCheckpoint, bytes.Replace(es[2].data, []byte("\n20\n"), []byte("\n19\n"), 1))), logKey, "does not verify"},
		{"not a tar", []byte("hello"), logKey, "truncated or not a tar file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := Verify(bytes.NewReader(tc.file), VerifyOptions{LogKey: tc.logKey})
			if tc.want == "" {
				if !res.Valid || res.Reason != "" || res.Events != 20 || res.TreeSize != 20 {
					t.Fatalf("untouched export: %+v", res)
				}
				return
			}
			if res.Valid || !strings.Contains(res.Reason, tc.want) {
				t.Fatalf("got %+v, want invalid with reason containing %q", res, tc.want)
			}
		})
	}
}

func TestExportRangeAndChunks(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			db, l := openLog(t, d)
			ctx := context.Background()
			emit(t, db, "a", 0, 13, 13)
			c13, err := l.Checkpoint(ctx)
			if err != nil {
				t.Fatal(err)
			}
			emit(t, db, "a", 13, 30, 4)
			c43, err := l.Checkpoint(ctx)
			if err != nil {
				t.Fatal(err)
			}
			key := l.Verifier().Key()
			tests := []struct {
				name     string
				o        ExportOptions
				previous []byte
				events   int64
				want     string
			}{
				{"all, chunks of 5", ExportOptions{ChunkEvents: 5}, c13.Note, 43, ""},
				{"from 13 to 43", ExportOptions{FromSize: 13, ChunkEvents: 4}, c13.Note, 30, ""},
				{"from 9 to 43, previous 13 inside", ExportOptions{FromSize: 9}, c13.Note, 34, ""},
				{"from 0 to 13", ExportOptions{ToSize: 13}, nil, 13, ""},
				{"empty range", ExportOptions{FromSize: 43}, c43.Note, 0, ""},
				{"previous before the range", ExportOptions{FromSize: 20}, c13.Note, 0, "--from-size 13 or less"},
				{"previous after the range", ExportOptions{ToSize: 13}, c43.Note, 0, "beyond this export's checkpoint"},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					f := export(t, db, tc.o)
					res := Verify(bytes.NewReader(f), VerifyOptions{LogKey: key, Previous: tc.previous})
					if tc.want == "" {
						if !res.Valid || res.Events != tc.events {
							t.Fatalf("%+v, want valid with %d events", res, tc.events)
						}
						return
					}
					if res.Valid || !strings.Contains(res.Reason, tc.want) {
						t.Fatalf("got %+v, want reason %q", res, tc.want)
					}
				})
			}
			// a chunked export with a whole events entry dropped
			es := readTar(t, export(t, db, ExportOptions{ChunkEvents: 5}))
			var dropped []tarEntry
			for _, e := range es {
				if e.name != "events/00000000000000000010" {
					dropped = append(dropped, e)
				}
			}
			if res := Verify(bytes.NewReader(writeTar(t, dropped)), VerifyOptions{LogKey: key}); res.Valid || !strings.Contains(res.Reason, "starts at index 15, but the events so far end at 10") {
				t.Fatalf("dropped chunk: %+v", res)
			}
			// a wrong stored hash of the tree before the first event
			es = readTar(t, export(t, db, ExportOptions{FromSize: 13}))
			first, rest, _ := strings.Cut(string(es[3].data), "\n")
			idx, _, _ := strings.Cut(first, " ")
			es[3].data = []byte(idx + " " + tlog.RecordHash([]byte("x")).String() + "\n" + rest)
			if res := Verify(bytes.NewReader(writeTar(t, es)), VerifyOptions{LogKey: key}); res.Valid || !strings.Contains(res.Reason, "consistency proof") {
				t.Fatalf("altered hashes: %+v", res)
			}
			if _, err := Export(ctx, db, io.Discard, ExportOptions{ToSize: 20}); err == nil || !strings.Contains(err.Error(), "no audit checkpoint of size 20") {
				t.Fatalf("export to an unsigned size: %v", err)
			}
			if _, err := Export(ctx, db, io.Discard, ExportOptions{FromSize: 50}); err == nil || !strings.Contains(err.Error(), "from-size") {
				t.Fatalf("export from beyond the end: %v", err)
			}
		})
	}
}

// TestVerifyDetectsFork builds two logs that agree on their first 5 events
// and then differ, and presents a checkpoint of one as the trusted previous
// checkpoint when verifying an export of the other.
func TestVerifyDetectsFork(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	key := newKey(t)
	mk := func(tag string) (*store.DB, *Log) {
		db := storetest.Open(t, store.SQLite)
		l, err := New(db, testConfig(), key)
		if err != nil {
			t.Fatal(err)
		}
		l.Attach()
		emit(t, db, "same", 0, 5, 5)
		emit(t, db, tag, 5, 4, 4)
		return db, l
	}
	_, la := mk("fork-a")
	dbb, lb := mk("fork-b")
	ca, err := la.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lb.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	emit(t, dbb, "b", 9, 3, 3)
	cb, err := lb.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f := export(t, dbb, ExportOptions{ToSize: cb.Size})
	res := Verify(bytes.NewReader(f), VerifyOptions{LogKey: lb.Verifier().Key(), Previous: ca.Note})
	if res.Valid || !strings.Contains(res.Reason, "fork: the previous checkpoint of size 9") {
		t.Fatalf("forked log: %+v", res)
	}
	// the log's own earlier checkpoint is fine
	own, err := CheckpointAt(ctx, dbb, 9)
	if err != nil {
		t.Fatal(err)
	}
	if res := Verify(bytes.NewReader(f), VerifyOptions{LogKey: lb.Verifier().Key(), Previous: own.Note}); !res.Valid {
		t.Fatalf("own previous checkpoint: %+v", res)
	}
}
