package store_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// TestDisableRoleCertificate: a role certificate enrolled before migration
// 0023 has no row in people, so disabling a person cannot reach it (the
// refusal says so and how to); disabling it by its serial (hex as openssl
// prints it) records it by serial alone, disabled, which is what the API
// looks up. A recorded person's certificate is disabled by serial too; a
// station's or a site's serial, a serial disabled already and one that is
// not hex are refused.
func TestDisableRoleCertificate(t *testing.T) {
	storetest.ForEachLedger(t, func(t *testing.T, db *store.DB) {
		ctx := context.Background()
		seed(t, db, 0, 9)
		if err := db.EnrollPerson(ctx, store.PersonCert{CertSerial: "C0FFEE", Person: "j.doe", Roles: []string{"operator"}}, "test"); err != nil {
			t.Fatal(err)
		}
		if err := db.EnrollStation(ctx, store.StationRecord{ID: "S1", Factory: "F1", Line: "L1", Pools: []string{"A"}, CertSerial: "0B:EE:F0"}, "test"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.DisablePerson(ctx, "role operator", "test"); tacerr.CodeOf(err) != tacerr.NotFound || !strings.Contains(err.Error(), "--serial") {
			t.Fatalf("disabling the person a legacy certificate names: %v, want not_found pointing to --serial", err)
		}

		pc, err := db.DisableRoleCertificate(ctx, "0A:1B:2C", "test")
		if err != nil || pc.CertSerial != "a1b2c" || pc.Person != "" || len(pc.Roles) != 0 || pc.DisabledAt.IsZero() {
			t.Fatalf("disable an unrecorded certificate: %+v, %v", pc, err)
		}
		if got, err := db.PersonCertificate(ctx, "A1B2C"); err != nil || got.DisabledAt.IsZero() || got.Person != "" {
			t.Fatalf("the API's look-up of it: %+v, %v", got, err)
		}
		if _, err := db.DisableRoleCertificate(ctx, "a1b2c", "test"); tacerr.CodeOf(err) != tacerr.InvalidState {
			t.Fatalf("disabling it again: %v, want invalid_state", err)
		}

		pc, err = db.DisableRoleCertificate(ctx, "c0:ff:ee", "test")
		if err != nil || pc.Person != "j.doe" || pc.DisabledAt.IsZero() || len(pc.Roles) != 1 {
			t.Fatalf("disable a recorded person's certificate by serial: %+v, %v", pc, err)
		}
		if _, err := db.DisablePerson(ctx, "j.doe", "test"); tacerr.CodeOf(err) != tacerr.NotFound {
			t.Fatalf("j.doe after its one certificate was disabled by serial: %v, want not_found", err)
		}

		for _, tc := range []struct{ serial, want string }{
			{"beef0", "station S1"},
			{"xyz", "not a certificate serial"},
			{"", "not a certificate serial"},
		} {
			if _, err := db.DisableRoleCertificate(ctx, tc.serial, "test"); tacerr.CodeOf(err) != tacerr.InvalidInput || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("disable %q: %v, want invalid_input saying %q", tc.serial, err, tc.want)
			}
		}
		people, err := db.People(ctx)
		if err != nil || len(people) != 2 {
			t.Fatalf("People: %+v, %v", people, err)
		}
	})
}
