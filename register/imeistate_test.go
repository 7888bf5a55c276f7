package register_test

import (
	"context"
	"testing"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/register"
	"github.com/tacline/tacline/store/storetest"
)

func TestDeliveries(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			db := ledger(t, d, 2)
			bind(t, db, 0)
			m, _ := imei.New(tac, 0)
			got, err := register.Deliveries(context.Background(), db, m)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].Event != "registered" || got[0].State != register.StatePending || got[0].CreatedAt.IsZero() || !got[0].DoneAt.IsZero() {
				t.Fatalf("deliveries of a bound IMEI = %+v, want one pending registered event", got)
			}
			other, _ := imei.New(tac, 1) // reserved only: nothing to report
			if got, err := register.Deliveries(context.Background(), db, other); err != nil || len(got) != 0 {
				t.Fatalf("deliveries of a reserved IMEI = %+v, %v; want none", got, err)
			}
		})
	}
}
