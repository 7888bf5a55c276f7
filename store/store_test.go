package store_test

import (
	"context"
	"testing"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

func TestOpenMigratesBothDialects(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			db := storetest.Open(t, d)
			if err := db.Ping(context.Background()); err != nil {
				t.Fatal(err)
			}
			// Migrating again is a no-op.
			if err := db.Migrate(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestConfigValidateNamesField(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   store.Config
		field string
	}{
		{"no driver", store.Config{DSN: "x"}, "database.driver"},
		{"bad driver", store.Config{Driver: "mysql", DSN: "x"}, "database.driver"},
		{"no dsn", store.Config{Driver: store.SQLite}, "database.dsn"},
		{"negative conns", store.Config{Driver: store.Postgres, DSN: "x", MaxConns: -1}, "database.max_conns"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			e, ok := tacerr.As(err)
			if !ok || e.Field != tc.field || e.Code != tacerr.InvalidConfig {
				t.Fatalf("Validate() = %v, want invalid_config on %s", err, tc.field)
			}
		})
	}
}

func TestReserveAfterCloseFailsCleanly(t *testing.T) {
	db, err := store.Open(context.Background(), storetest.Config(t, store.SQLite))
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = db.Reserve(context.Background(), store.ReserveRequest{RequestID: "r", Pool: "p", Caller: "c", Kind: store.KindBench, PerDevice: 1})
	if !tacerr.Is(err, tacerr.Unavailable) {
		t.Fatalf("Reserve after Close = %v, want unavailable", err)
	}
}
