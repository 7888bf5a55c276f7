package site_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/site"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// downHQ is headquarters unreachable.
type downHQ struct{}

func (downHQ) Lease(context.Context, wire.LeaseRequest) (wire.Lease, error) {
	return wire.Lease{}, tacerr.New(tacerr.Unavailable, "headquarters unreachable")
}

func (downHQ) Sync(context.Context, wire.SiteSyncRequest) (wire.SiteSyncResponse, error) {
	return wire.SiteSyncResponse{}, tacerr.New(tacerr.Unavailable, "headquarters unreachable")
}

func (downHQ) Status(context.Context) (wire.SiteStatus, error) {
	return wire.SiteStatus{}, tacerr.New(tacerr.Unavailable, "headquarters unreachable")
}

// TestSiteKeepsCosignedCheckpoint: after a sync the site keeps HQ's
// cosigned checkpoint in its ledger and in the file outside it. With HQ
// unreachable, a ledger restored from an older backup, a ledger with
// another history, and an altered file each make the site refuse to issue
// (site_not_current, naming why); the current ledger is only waiting for
// HQ's confirmation.
func TestSiteKeepsCosignedCheckpoint(t *testing.T) {
	ctx := context.Background()
	siteKey := key(t)
	_, hq := newHQ(t, siteKey)
	se := newSite(t, siteKey, hq)
	if err := se.s.EnsureLeases(ctx); err != nil {
		t.Fatal(err)
	}
	if err := se.env.DB.EnrollStation(ctx, store.StationRecord{ID: "SS", Factory: "F9", Line: "L1", Pools: []string{"HQ-A"}}, "test"); err != nil {
		t.Fatal(err)
	}
	if err := se.s.Confirm(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"D0", "D1"} {
		if _, err := se.provision(t, d); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := se.s.SyncOnce(ctx); err != nil || n != 2 {
		t.Fatalf("sync = %d, %v", n, err)
	}
	head, _, err := audit.Head(ctx, se.env.DB)
	if err != nil {
		t.Fatal(err)
	}
	kept, err := se.env.DB.Cosigned(ctx, "s1")
	if err != nil || kept.Size != head {
		t.Fatalf("ledger keeps cosigned size %d (%v), want %d", kept.Size, err, head)
	}
	msg, err := os.ReadFile(se.cosigned)
	if err != nil {
		t.Fatal(err)
	}
	c, err := audit.OpenCosigned(msg, se.log.Verifier(), witness(t).Verifier())
	if err != nil || c.Size != head || string(msg) != kept.Cosigned {
		t.Fatalf("file holds %+v, %v", c, err)
	}

	// The same ledger restarted while HQ is down: not refused for a
	// rollback, only waiting for HQ.
	again, err := site.New(site.Config{Name: "s1", Pools: []site.PoolPolicy{{Pool: "HQ-A", LeaseSize: 10}}, WitnessKey: witness(t).Verifier().Key(),
		CosignedCheckpoint: se.cosigned}, se.env.DB, se.log, downHQ{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := again.CheckCosigned(ctx); err != nil {
		t.Fatalf("current ledger: %v", err)
	}
	if err := again.Confirm(ctx); !tacerr.Is(err, tacerr.Unavailable) {
		t.Fatalf("current ledger, HQ down: %v", err)
	}
	if err := again.Ready(); !tacerr.Is(err, tacerr.SiteNotCurrent) || !strings.Contains(err.Error(), "not yet confirmed") {
		t.Fatalf("current ledger, HQ down, ready: %v", err)
	}

	cases := []struct {
		name  string
		file  func(t *testing.T) string // the cosigned file the restored site starts with
		setup func(t *testing.T, se siteEnv)
		why   string
	}{
		{"ledger restored from an older backup", func(t *testing.T) string { return copyFile(t, se.cosigned) }, nil, "restored from an older backup"},
		{"ledger with another history", func(t *testing.T) string { return copyFile(t, se.cosigned) }, func(t *testing.T, o siteEnv) {
			if err := o.env.DB.InTx(ctx, func(tx *store.Tx) error {
				for range head + 3 {
					tx.Emit(store.Event{Type: store.EventConfigChanged, Actor: "forger"})
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}, "history was rewritten"},
		{"altered cosigned file", func(t *testing.T) string {
			p := copyFile(t, se.cosigned)
			b, _ := os.ReadFile(p)
			if i := strings.LastIndex(string(b), " "); i > 0 {
				b[i+8] ^= 1 // a bit of the cosignature
			}
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}, nil, "does not verify"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			old := newSiteAt(t, siteKey, downHQ{}, tc.file(t))
			if tc.setup != nil {
				tc.setup(t, old)
			}
			if err := old.s.Confirm(ctx); !tacerr.Is(err, tacerr.SiteNotCurrent) || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("confirm: %v, want site_not_current (%s)", err, tc.why)
			}
			if err := old.s.Ready(); !tacerr.Is(err, tacerr.SiteNotCurrent) || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("ready: %v", err)
			}
			// Refused for good: checking again, as at the next start, refuses again.
			if err := old.s.CheckCosigned(ctx); !tacerr.Is(err, tacerr.SiteNotCurrent) {
				t.Fatalf("second check: %v", err)
			}
		})
	}
}

func copyFile(t *testing.T, src string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "checkpoint.cosigned")
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestOwnRowIsNoEnrolment: the row in which a site keeps HQ's cosigned
// checkpoint does not enrol it at its own server's sites API.
func TestOwnRowIsNoEnrolment(t *testing.T) {
	ctx := context.Background()
	siteKey := key(t)
	_, hq := newHQ(t, siteKey)
	se := newSite(t, siteKey, hq)
	if err := se.env.DB.RecordCosigned(ctx, "s9", store.SiteCheckpoint{Size: 1, Hash: make([]byte, 32), Note: "n", Cosigned: "c"}); err != nil {
		t.Fatal(err)
	}
	atSite, err := site.NewHQ(se.env.DB, witness(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := atSite.Authenticate(ctx, "s9", ""); !tacerr.Is(err, tacerr.Unauthorized) {
		t.Fatalf("a site's own cosigned-checkpoint row authenticated: %v", err)
	}
}
