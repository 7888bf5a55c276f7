package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

func TestProve(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db, l := openLog(t, d)
			// events 0..29 name IMEIs with SNR i; 30..34 name SNR 3 again
			emit(t, db, "a", 0, 30, 30)
			if err := db.InTx(ctx, func(tx *store.Tx) error {
				for i := range 5 {
					e := testEvent("again", 3)
					e.Reason = string(rune('a' + i))
					tx.Emit(e)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if _, err := l.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			emit(t, db, "late", 3, 1, 1) // after the checkpoint: pending
			b, err := Prove(ctx, db, testIMEI(3))
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Events) != 6 || b.Pending != 1 {
				t.Fatalf("%d events, %d pending; want 6 and 1", len(b.Events), b.Pending)
			}
			cp, err := OpenCheckpoint([]byte(b.Checkpoint), l.Verifier())
			if err != nil {
				t.Fatal(err)
			}
			// an independent Merkle library accepts every inclusion proof
			for _, pe := range b.Events {
				var p [][]byte
				for _, h := range pe.Proof {
					p = append(p, append([]byte{}, h[:]...))
				}
				if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(pe.Index), uint64(cp.Size), rfc6962.DefaultHasher.HashLeaf(pe.Leaf), p, cp.Root[:]); err != nil {
					t.Fatalf("transparency-dev/merkle rejects the proof of leaf %d: %v", pe.Index, err)
				}
			}
			data, _ := json.Marshal(b)
			key := l.Verifier().Key()
			other, _ := NewNoteSigner(testOrigin, newKey(t))
			edit := func(f func(*ProofBundle)) []byte {
				var c ProofBundle
				if err := json.Unmarshal(data, &c); err != nil {
					t.Fatal(err)
				}
				f(&c)
				out, _ := json.Marshal(c)
				return out
			}
			tests := []struct {
				name   string
				data   []byte
				logKey string
				want   string
			}{
				{"untouched", data, key, ""},
				{"leaf changed", edit(func(c *ProofBundle) {
					c.Events[1].Leaf[len(c.Events[1].Leaf)-1] ^= 1
					e, _ := DecodeEvent(c.Events[1].Leaf)
					c.Events[1].Event = eventJSON(e)
				}), key, "inclusion proof does not lead"},
				{"shown event changed", edit(func(c *ProofBundle) { c.Events[0].Event.Actor = "someone else" }), key, "differs from the signed leaf"},
				{"index changed", edit(func(c *ProofBundle) { c.Events[0].Index++ }), key, "inclusion proof"},
				{"imei changed", edit(func(c *ProofBundle) { c.IMEI = testIMEI(4) }), key, "does not name IMEI"},
				{"other key", data, other.Verifier().Key(), "not signed by the log key"},
				{"garbage", []byte("{"), key, "not a tacline proof file"},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					res := VerifyProof(tc.data, tc.logKey)
					if tc.want == "" {
						if !res.Valid || res.Events != 6 || res.TreeSize != 35 {
							t.Fatalf("%+v", res)
						}
						return
					}
					if res.Valid || !strings.Contains(res.Reason, tc.want) {
						t.Fatalf("got %+v, want %q", res, tc.want)
					}
				})
			}
			if _, err := Prove(ctx, db, "12345"); err == nil || !strings.Contains(err.Error(), "--imei") {
				t.Fatalf("bad IMEI: %v", err)
			}
		})
	}
}

func FuzzVerifyProof(f *testing.F) {
	f.Add([]byte(`{"format":"tacline-audit-proof","version":1}`))
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		res := VerifyProof(data, "")
		if res.Valid == (res.Reason != "") {
			t.Fatalf("valid %v with reason %q", res.Valid, res.Reason)
		}
	})
}

func FuzzVerify(f *testing.F) {
	db, l := openLog(f, store.SQLite)
	emit(f, db, "a", 0, 5, 5)
	if _, err := l.Checkpoint(context.Background()); err != nil {
		f.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := Export(context.Background(), db, &buf, ExportOptions{FromSize: 2, ChunkEvents: 2}); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		res := Verify(bytes.NewReader(data), VerifyOptions{})
		if res.Valid == (res.Reason != "") {
			t.Fatalf("valid %v with reason %q", res.Valid, res.Reason)
		}
	})
}

// TestProveFindsStagedAndMovedIndexRows: on SQLite the IMEI index rows of
// an append are staged by leaf index and moved into audit_imeis whenever an
// append crosses a multiple of 2,048 leaves; a proof by IMEI finds the
// events of both parts (PostgreSQL writes audit_imeis directly).
func TestProveFindsStagedAndMovedIndexRows(t *testing.T) {
	t.Parallel()
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			db, l := openLog(t, d)
			ctx := t.Context()
			emit(t, db, "a", 0, 2100, 100) // the append 2000..2099 crosses 2048
			emit(t, db, "b", 3, 1, 1)      // leaf 2100, SNR 3 again
			count := func(table string) int {
				var n int
				if err := storetest.Reader(db).Get(&n, `SELECT count(*) FROM `+table); err != nil {
					t.Fatal(err)
				}
				return n
			}
			wantStaged, wantIndexed := 1, 2100
			if d == store.Postgres {
				wantStaged, wantIndexed = 0, 2101
			}
			if s, i := count("audit_imeis_staged"), count("audit_imeis"); s != wantStaged || i != wantIndexed {
				t.Fatalf("%d staged and %d indexed IMEI rows, want %d and %d", s, i, wantStaged, wantIndexed)
			}
			if _, err := l.Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			b, err := Prove(ctx, db, testIMEI(3))
			if err != nil {
				t.Fatal(err)
			}
			if len(b.Events) != 2 || b.Events[0].Index != 3 || b.Events[1].Index != 2100 || b.Pending != 0 {
				t.Fatalf("events %+v, %d pending; want leaves 3 and 2100", b.Events, b.Pending)
			}
			if b, err = Prove(ctx, db, testIMEI(2099)); err != nil || len(b.Events) != 1 || b.Events[0].Index != 2099 {
				t.Fatalf("proof of SNR 2099: %+v, %v; want leaf 2099", b, err)
			}
		})
	}
}
