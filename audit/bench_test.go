package audit

import (
	"bytes"
	"context"
	"testing"

	"github.com/tacline/tacline/store"
)

// BenchmarkAppend measures one event appended per ledger transaction, as on
// the provisioning path (SQLite).
func BenchmarkAppend(b *testing.B) {
	db, _ := openLog(b, store.SQLite)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := db.InTx(context.Background(), func(tx *store.Tx) error {
			tx.Emit(testEvent("b", i))
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify measures offline verification per event.
func BenchmarkVerify(b *testing.B) {
	db, l := openLog(b, store.SQLite)
	const n = 20000
	emit(b, db, "b", 0, n, 2000)
	if _, err := l.Checkpoint(context.Background()); err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := Export(context.Background(), db, &buf, ExportOptions{}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(buf.Len()))
	for b.Loop() {
		if res := Verify(bytes.NewReader(buf.Bytes()), VerifyOptions{}); !res.Valid {
			b.Fatal(res.Reason)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/event")
	b.ReportMetric(n, "events/op")
}
