package store_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"testing"

	"github.com/tacline/tacline/store/storetest"
)

// BenchmarkStationRequestCheck measures the read every provisioning
// request makes before it reserves anything (StationRequestCheckOf: the
// station, the request id, the device serial and the key), each call with
// new values as in production (docs/benchmarks.md, session 13: on SQLite
// it was compiled again at every call until store/qpsg.c).
//
//	go test -run '^$' -bench StationRequestCheck -benchtime 20000x ./store/
func BenchmarkStationRequestCheck(b *testing.B) {
	for _, d := range storetest.Dialects {
		b.Run(string(d), func(b *testing.B) {
			ctx := context.Background()
			db := storetest.Open(b, d)
			b.ResetTimer()
			for i := range b.N {
				h := sha256.Sum256(fmt.Appendf(nil, "key-%d", i))
				c, err := db.StationRequestCheckOf(ctx, "station-1", fmt.Sprintf("req-%d", i), fmt.Sprintf("SN%08d", i), h[:])
				if err != nil {
					b.Fatal(err)
				}
				if c.StationErr == nil || c.DeviceExists || c.Issuance != nil {
					b.Fatalf("an empty ledger answered %+v", c)
				}
			}
		})
	}
}
