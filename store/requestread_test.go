package store_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// StationRequestCheckOf reads what Station and NewRequestCheck read, in one
// statement: the station's record (not_found for an unknown one, disabled
// as soon as it is) and the request's intent, device and key.
func TestStationRequestCheckOf(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 99)
		res, reqs := reserveBatch(t, db, "q", 1)
		b := bindingOf(res[0], reqs[0])
		same := func(station, requestID string) store.StationRequestCheck {
			t.Helper()
			got, err := db.StationRequestCheckOf(ctx, station, requestID, b.DeviceSerial, b.SPKIHash)
			if err != nil {
				t.Fatal(err)
			}
			want, err := db.NewRequestCheck(ctx, requestID, b.DeviceSerial, b.SPKIHash)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.RequestCheck, want) {
				t.Fatalf("request check %+v, want NewRequestCheck's %+v", got.RequestCheck, want)
			}
			st, err := db.Station(ctx, station)
			if !reflect.DeepEqual(got.Station, st) || tacerr.CodeOf(got.StationErr) != tacerr.CodeOf(err) {
				t.Fatalf("station %+v, %v; want Station's %+v, %v", got.Station, got.StationErr, st, err)
			}
			return got
		}
		if c := same("S9", b.RequestID); !tacerr.Is(c.StationErr, tacerr.NotFound) || c.Issuance == nil {
			t.Fatalf("unknown station: %+v", c)
		}
		if err := db.EnrollStation(ctx, store.StationRecord{ID: "S9", Factory: "F1", Line: "L1", Pools: []string{"A"}, CertSerial: "0a", Description: "d"}, "test"); err != nil {
			t.Fatal(err)
		}
		if c := same("S9", "unknown-request"); c.StationErr != nil || c.Station.ID != "S9" || c.Station.Pools[0] != "A" || c.Issuance != nil {
			t.Fatalf("enrolled station: %+v", c)
		}
		if err := db.CommitBinding(ctx, b); err != nil {
			t.Fatal(err)
		}
		if err := db.DisableStation(ctx, "S9", "test"); err != nil {
			t.Fatal(err)
		}
		if c := same("S9", b.RequestID); c.Station.DisabledAt.IsZero() || !c.DeviceExists || c.KeyOwner != b.DeviceSerial || c.Issuance.State != store.IssuanceIssued {
			t.Fatalf("disabled station, issued request: %+v", c)
		}
	})
}
