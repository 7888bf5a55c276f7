package audit

import (
	"context"
	"testing"

	"github.com/tacline/tacline/store/storetest"
)

func TestRecentCheckpoints(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db, l := openLog(t, d)
			if cps, err := RecentCheckpoints(ctx, db, 5); err != nil || len(cps) != 0 {
				t.Fatalf("before any checkpoint: %v, %v; want none", cps, err)
			}
			var signed []StoredCheckpoint
			for i := range 3 {
				emit(t, db, "cp", i*4, 4, 2)
				sc, err := l.Checkpoint(ctx)
				if err != nil {
					t.Fatal(err)
				}
				signed = append(signed, sc)
			}
			cps, err := RecentCheckpoints(ctx, db, 2)
			if err != nil {
				t.Fatal(err)
			}
			if len(cps) != 2 || cps[0].Size != 12 || cps[1].Size != 8 || cps[0].Root != signed[2].Root || cps[1].Root != signed[1].Root {
				t.Fatalf("newest two checkpoints = %+v, want sizes 12 and 8 with the signed roots", cps)
			}
			if cps[0].SignedAt.IsZero() || cps[0].SignedAt.Before(cps[1].SignedAt) {
				t.Fatalf("signing times %v, %v: want newest first", cps[0].SignedAt, cps[1].SignedAt)
			}
		})
	}
}
