package provisioner_test

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/provisioner/provtest"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// TestMetaLoadedOnceWhenExpired: the requests in flight when a pool's
// cached metadata expires make one ledger read between them (the others
// wait for its answer), not one each; an unknown pool's refusal is shared
// the same way and never cached.
func TestMetaLoadedOnceWhenExpired(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		env := provtest.New(t, d)
		ctx := context.Background()
		release := make(chan struct{})
		var armed bool
		count, restore := provisioner.CountMetaLoads(func(int64) {
			if armed {
				<-release
			}
		})
		defer restore()
		if tac, err := env.Service.Meta(ctx, "F1-A"); err != nil || tac != provtest.TAC {
			t.Fatalf("first load: %d, %v", tac, err)
		}
		if tac, err := env.Service.Meta(ctx, "F1-A"); err != nil || tac != provtest.TAC || count() != 1 {
			t.Fatalf("cached: %d, %v, %d loads, want 1", tac, err, count())
		}
		env.Clock.Add(6 * time.Second) // past the cache's 5 s
		armed = true

		for _, pool := range []string{"F1-A", "NO-SUCH-POOL"} {
			const callers = 8
			before := count()
			var wg sync.WaitGroup
			errs := make([]error, callers)
			tacs := make([]uint32, callers)
			for i := 0; i < callers; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					tacs[i], errs[i] = env.Service.Meta(ctx, pool)
				}(i)
			}
			// Every caller has either begun a load (held in it) or is
			// waiting for one: only then is the load let go.
			for int(count()-before)+env.Service.MetaWaiting(pool) < callers {
				runtime.Gosched()
			}
			close(release)
			wg.Wait()
			release = make(chan struct{})
			if n := count() - before; n != 1 {
				t.Fatalf("pool %s: %d callers after expiry made %d ledger loads, want 1", pool, callers, n)
			}
			for i := range errs {
				switch pool {
				case "F1-A":
					if errs[i] != nil || tacs[i] != provtest.TAC {
						t.Fatalf("caller %d: %d, %v", i, tacs[i], errs[i])
					}
				default:
					if !tacerr.Is(errs[i], tacerr.PoolNotFound) {
						t.Fatalf("caller %d: %v, want pool_not_found", i, errs[i])
					}
				}
			}
		}
		armed = false
		before := count()
		if _, err := env.Service.Meta(ctx, "F1-A"); err != nil || count() != before {
			t.Fatalf("reloaded entry not cached: %v, %d loads", err, count()-before)
		}
		if _, err := env.Service.Meta(ctx, "NO-SUCH-POOL"); !tacerr.Is(err, tacerr.PoolNotFound) || count() != before+1 {
			t.Fatalf("unknown pool: %v, %d loads, want a new one (refusals are not cached)", err, count()-before)
		}
	})
}
