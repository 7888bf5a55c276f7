package allocbench

import (
	"context"
	"testing"
	"time"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// TestRunReportsNoDuplicates runs a short benchmark on both databases and
// checks what it reports (not how fast it is).
func TestRunReportsNoDuplicates(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			res, err := Run(context.Background(), Options{Driver: d, AdminDSN: storetest.AdminDSN(), Workers: 8, Duration: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if res.Reservations == 0 || res.Duplicates != 0 || !res.LedgerOK || res.IMEIs != res.Reservations || res.BaselineCommitsPerSecond <= 0 {
				t.Fatalf("result = %+v", res)
			}
		})
	}
}

func BenchmarkReserveSQLite(b *testing.B) {
	res, err := Run(context.Background(), Options{Driver: store.SQLite, Workers: 64, Duration: 3 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.PerSecond, "reservations/s")
	b.ReportMetric(res.Ratio, "ratio")
}
