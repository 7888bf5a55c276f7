package bench

import (
	"context"
	"time"

	"github.com/tacline/tacline/devenv"
	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/factory/sim"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/pgadmin"
)

// setupEnv makes a fresh development environment in o.Dir (on PostgreSQL
// in a throwaway database that drop removes). Callers defer drop.
func setupEnv(ctx context.Context, o devenv.Options, adminDSN string) (env *devenv.Env, drop func(), err error) {
	drop = func() {}
	if o.Driver == store.Postgres {
		dsn, dropDB, err := pgadmin.CreateDatabase(ctx, adminDSN)
		if err != nil {
			return nil, drop, err
		}
		drop = func() { dropDB() }
		o.DSN = dsn
	}
	env, err = devenv.Setup(ctx, o)
	return env, drop, err
}

// lineLoad drives the server at url with the environment's stations for d
// at rate devices/s (0: closed loop), pregenerating pregen devices.
func lineLoad(ctx context.Context, url string, creds *factory.Creds, stations int, d time.Duration, rate float64, pregen int, started func()) (sim.Summary, error) {
	return sim.Load(ctx, sim.Config{ServerURL: url, ServerCAFile: creds.ServerCAFile, RootsFile: creds.RootsFile,
		Stations: creds.Stations, Workers: stations, Duration: d, Rate: rate, Pregenerate: pregen, Started: started})
}
