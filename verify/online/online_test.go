package online_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/provisioner/provtest"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
	"github.com/tacline/tacline/verify"
	"github.com/tacline/tacline/verify/online"
	"github.com/tacline/tacline/verify/verifytest"
)

// TestService: challenges, checks and the public lookup against a real
// ledger on SQLite and PostgreSQL, with the provisioner's test clock.
func TestService(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) { testService(t, d) })
	}
}

func testService(t *testing.T, d store.Dialect) {
	ctx := context.Background()
	env := provtest.New(t, d)
	svc, err := online.New(ctx, env.DB, online.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	dev := verifytest.Provision(t, env, "ONL-A")
	answer := func(key func() []byte) verify.Request {
		ch, err := svc.NewChallenge(ctx, "test")
		if err != nil {
			t.Fatal(err)
		}
		if !ch.ExpiresAt.Equal(env.Clock.Now().Add(2 * time.Minute).Truncate(time.Second)) {
			t.Fatalf("expires %v", ch.ExpiresAt)
		}
		in := dev.Input(t, mustHex(t, ch.Nonce))
		if key != nil {
			in.Signature = key()
		}
		return verifytest.Request(in)
	}

	req := answer(nil)
	res, err := svc.Verify(ctx, req)
	if err != nil || res.Verdict != verify.Genuine {
		t.Fatalf("genuine: %+v %v", res, err)
	}
	if _, err := svc.Verify(ctx, req); !tacerr.Is(err, tacerr.Conflict) {
		t.Fatalf("replay: %v", err)
	}
	clone := answer(func() []byte { return []byte{0x30, 0x00} })
	if res, err := svc.Verify(ctx, clone); err != nil || res.Verdict != verify.Cloned {
		t.Fatalf("clone: %+v %v", res, err)
	}
	late := answer(nil)
	env.Clock.Add(3 * time.Minute)
	if _, err := svc.Verify(ctx, late); !tacerr.Is(err, tacerr.InvalidInput) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired: %v", err)
	}
	bad := answer(nil)
	bad.IMEI = "1234"
	if _, err := svc.Verify(ctx, bad); !tacerr.Is(err, tacerr.InvalidIMEI) {
		t.Fatalf("malformed IMEI: %v", err)
	}

	// The public lookup.
	al, err := env.Service.Allocate(ctx, provisioner.AllocateInput{Actor: provtest.Actor("S1"), RequestID: "alloc-1", Pool: "F1-A", Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	voided, reserved := al.Devices[0][0], al.Devices[1][0]
	if err := env.Service.Void(ctx, provisioner.VoidInput{Actor: provtest.Actor("S1"), IMEI: voided, Reason: "scrapped"}); err != nil {
		t.Fatal(err)
	}
	rev := verifytest.Provision(t, env, "ONL-R")
	if err := env.Service.Revoke(ctx, provisioner.RevokeInput{Actor: provtest.Operator, DeviceSerial: "ONL-R", Reason: "cloned"}); err != nil {
		t.Fatal(err)
	}
	never, _ := imei.New(provtest.TAC, 999_999)
	for _, tc := range []struct {
		name   string
		m      imei.IMEI
		status string
	}{
		{"bound", dev.Issued.IMEIs[1], "registered"},
		{"voided", voided, "voided"},
		{"revoked", rev.Issued.IMEIs[0], "revoked"},
		{"reserved only", reserved, "unknown"},
		{"never allocated", never, "unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := svc.Lookup(ctx, tc.m)
			if err != nil || l.Status != tc.status || l.IMEI != tc.m.String() {
				t.Fatalf("%+v %v, want %s", l, err, tc.status)
			}
			if tc.status != "unknown" && (l.Brand != provtest.Manufacturer || l.Model != "EX-1") {
				t.Fatalf("brand/model %+v", l)
			}
		})
	}

	// The ledger side of verify.Ledger.
	lg := online.Ledger{DB: env.DB}
	if ok, err := lg.KnowsTAC(ctx, provtest.TAC); !ok || err != nil {
		t.Fatalf("known TAC: %v %v", ok, err)
	}
	if ok, err := lg.KnowsTAC(ctx, 35_000_000); ok || err != nil {
		t.Fatalf("unknown TAC: %v %v", ok, err)
	}
	if c, err := lg.Certificate(ctx, "00"); c != nil || err != nil {
		t.Fatalf("unknown certificate: %+v %v", c, err)
	}
	if r, err := lg.IMEI(ctx, never); r != nil || err != nil {
		t.Fatalf("unknown IMEI: %+v %v", r, err)
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := verify.ParseNonce(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestConfig: the challenge lifetime is bounded and named when wrong.
func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		ttl  time.Duration
		ok   bool
	}{{"default", 2 * time.Minute, true}, {"zero", 0, false}, {"too long", 2 * time.Hour, false}} {
		t.Run(tc.name, func(t *testing.T) {
			err := online.Config{ChallengeTTL: tc.ttl}.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("%s: %v", tc.ttl, err)
			}
			if e, isTE := tacerr.As(err); !tc.ok && (!isTE || e.Field != "authenticity.challenge_ttl") {
				t.Fatalf("field: %v", err)
			}
		})
	}
}
