package site_test

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/site"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// TestSyncInclusion: HQ applies an event only when the site's checkpoint
// includes its leaf (the inclusion proof) and the leaf is the event. Each
// tampered batch is refused whole (lease_violation naming the field),
// counted, recorded (consistent false), and nothing of it is applied; the
// untampered batch is applied afterwards.
func TestSyncInclusion(t *testing.T) {
	ctx := context.Background()
	env := newHQEnv(t)
	lease, hq, reg, s := env.lease, env.hq, env.reg, env.log
	older := s.bind(t, 0, lease.SNRStart)                  // leaves 0-1 (event 1 is leaf 1)
	cp := s.bind(t, 2, lease.SNRStart+1, lease.SNRStart+2) // leaves 2-7 (events 2, 3 are leaves 3, 5)
	// A voided event (another type through the same check): leaf 8, event 4.
	m := mustIMEI(t, lease.SNRStart+3)
	if err := s.db.InTx(ctx, func(tx *store.Tx) error {
		tx.Emit(store.Event{Type: store.EventIMEIVoided, Actor: "test", RequestID: "v", Pool: "A.lease1", TAC: m.TACString(),
			IMEIs: []string{m.String()}, Reason: "abandoned"})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	cp = s.emit(t, 1) // size 10
	good := func() []wire.SiteEvent { return s.events(t, cp.Size, 1, 2, 3, 4) }
	if got := good(); got[1].LeafIndex != 3 || got[3].LeafIndex != 8 {
		t.Fatalf("leaf indexes %d, %d, want 3, 8", got[1].LeafIndex, got[3].LeafIndex)
	}
	otherProofs := s.events(t, older.Size, 1) // event 1 proved in the tree of size 2
	configLeaf := s.configLeaf(t, cp.Size)

	cases := []struct {
		name   string
		tamper func(evs []wire.SiteEvent)
		field  string
	}{
		{"device serial changed", func(evs []wire.SiteEvent) { evs[1].DeviceSerial = "another" }, "events[1].device_serial"},
		{"IMEI changed", func(evs []wire.SiteEvent) { evs[2].IMEIs = []string{mustIMEI(t, lease.SNRStart+9).String()} }, "events[2].imeis"},
		{"void reason changed", func(evs []wire.SiteEvent) { evs[3].Reason = "scrapped" }, "events[3].reason"},
		{"type changed", func(evs []wire.SiteEvent) { evs[0].Type = store.EventIMEIVoided }, "events[0].type"},
		{"leaf changed with the event", func(evs []wire.SiteEvent) {
			evs[1].Leaf = []byte(strings.Replace(string(evs[1].Leaf), "dev-", "DEV-", 1))
			evs[1].DeviceSerial = strings.Replace(evs[1].DeviceSerial, "dev-", "DEV-", 1)
		}, "events[1].proof"},
		{"wrong leaf index", func(evs []wire.SiteEvent) { evs[2].LeafIndex = 4 }, "events[2].proof"},
		{"leaf index of another event", func(evs []wire.SiteEvent) {
			evs[2].LeafIndex, evs[2].Proof = evs[1].LeafIndex, evs[1].Proof
		}, "events[2].leaf_index"},
		{"leaf index beyond the checkpoint", func(evs []wire.SiteEvent) { evs[3].LeafIndex = cp.Size }, "events[3].leaf_index"},
		{"bad proof", func(evs []wire.SiteEvent) {
			h, _ := base64.StdEncoding.DecodeString(evs[0].Proof[0])
			h[0] ^= 1
			evs[0].Proof[0] = base64.StdEncoding.EncodeToString(h)
		}, "events[0].proof"},
		{"proof against another checkpoint", func(evs []wire.SiteEvent) { evs[0].Proof = otherProofs[0].Proof }, "events[0].proof"},
		{"leaf of an event sites do not ship", func(evs []wire.SiteEvent) {
			evs[3].LeafIndex, evs[3].Leaf, evs[3].Proof = configLeaf.LeafIndex, configLeaf.Leaf, configLeaf.Proof
		}, "events[3].leaf"},
	}
	for i, c := range cases {
		evs := good()
		c.tamper(evs)
		_, err := hq.Sync(ctx, "s1", wire.SiteSyncRequest{Events: evs, Checkpoint: string(cp.Note)})
		e, ok := tacerr.As(err)
		if !ok || e.Code != tacerr.LeaseViolation || e.Field != c.field {
			t.Fatalf("%s: %v (field %q), want lease_violation on %s", c.name, err, e.Field, c.field)
		}
		st, err := hq.Status(ctx, "s1")
		if err != nil || st.Consistent || st.Refusals != int64(i+1) || st.Bound != 0 || st.AppliedSeq != 0 || st.VerifiedSize != 0 {
			t.Fatalf("%s: status %+v, %v", c.name, st, err)
		}
	}
	if got := refusedTotal(t, reg); got != float64(len(cases)) {
		t.Fatalf("refused counter = %v, want %d", got, len(cases))
	}
	res, err := hq.Sync(ctx, "s1", wire.SiteSyncRequest{Events: good(), Checkpoint: string(cp.Note)})
	if err != nil || res.Applied != 4 {
		t.Fatalf("untampered batch: %+v, %v", res, err)
	}
	st, err := hq.Status(ctx, "s1")
	if err != nil || !st.Consistent || st.Bound != 3 || st.Voided != 1 {
		t.Fatalf("status %+v, %v", st, err)
	}
}

// configLeaf is the last leaf of the log (a config.changed event from
// emit) dressed as a shipped event, with its proof in the tree of size.
func (s siteLog) configLeaf(t *testing.T, size int64) wire.SiteEvent {
	t.Helper()
	ctx := context.Background()
	leaves, err := s.db.AuditLeavesAt(ctx, []int64{size - 1})
	if err != nil {
		t.Fatal(err)
	}
	proofs, err := audit.InclusionProofs(ctx, s.db, size, []int64{size - 1})
	if err != nil {
		t.Fatal(err)
	}
	return wire.SiteEvent{LeafIndex: size - 1, Leaf: leaves[size-1], Proof: site.EncodeHashes(proofs[0])}
}
