package lifecycle

import (
	"strings"
	"testing"

	"github.com/tacline/tacline/tacerr"
)

// TestRevokeReasonCodes walks every revoke reason: each has a CRLReason of
// its own in the table (none unmapped), and the codes are the RFC 5280 ones.
func TestRevokeReasonCodes(t *testing.T) {
	want := map[RevokeReason]int{"stolen": 1, "cloned": 1, "compromised": 1, "superseded": 4, "cessationOfOperation": 5, "other": 0}
	if len(reasonCodes) != len(RevokeReasons) {
		t.Fatalf("%d reason codes for %d revoke reasons", len(reasonCodes), len(RevokeReasons))
	}
	for _, r := range RevokeReasons {
		if !r.Valid() {
			t.Errorf("%s is listed but not valid", r)
		}
		if _, ok := reasonCodes[r]; !ok {
			t.Errorf("revoke reason %s has no CRLReason", r)
		}
		w, ok := want[r]
		if !ok {
			t.Errorf("revoke reason %s is new: add its RFC 5280 code to this test", r)
		}
		if got := r.Code(false); got != w {
			t.Errorf("%s.Code(false) = %d, want %d", r, got, w)
		}
		wantCA := w
		if w == CRLKeyCompromise {
			wantCA = CRLCACompromise
		}
		if got := r.Code(true); got != wantCA {
			t.Errorf("%s.Code(true) = %d, want %d", r, got, wantCA)
		}
	}
	for _, sub := range [][]RevokeReason{RevokeDeviceReasons, RevokeCAReasons} {
		for _, r := range sub {
			if !r.Valid() {
				t.Errorf("%s is allowed but not a revoke reason", r)
			}
		}
	}
	for _, bad := range []RevokeReason{"", "keyCompromise", "scrapped", "Stolen"} {
		if bad.Valid() || bad.Code(false) != CRLUnspecified {
			t.Errorf("%q is valid or has a code", bad)
		}
	}
}

func TestWordsValid(t *testing.T) {
	for _, s := range States {
		if !s.Valid() {
			t.Errorf("state %s not valid", s)
		}
	}
	if State("bound").Valid() || State("").Valid() {
		t.Error("lower-case or empty state valid")
	}
	for _, r := range VoidReasons {
		if !r.Valid() {
			t.Errorf("void reason %s not valid", r)
		}
		if r.Chosen() == (r == VoidAbandoned || r == VoidLeaseReturned) {
			t.Errorf("void reason %s: Chosen = %v", r, r.Chosen())
		}
	}
	if VoidReason("stolen").Valid() {
		t.Error("stolen is a void reason")
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name, in string
		parse    func(string) (string, error)
		want     string // "" means an error naming the field
	}{
		{"void ok", "rework", func(s string) (string, error) { r, err := ParseVoidReason("reason", s); return string(r), err }, "rework"},
		{"void abandoned refused", "abandoned", func(s string) (string, error) { r, err := ParseVoidReason("reason", s); return string(r), err }, ""},
		{"void unknown", "lost", func(s string) (string, error) { r, err := ParseVoidReason("reason", s); return string(r), err }, ""},
		{"device revoke ok", "cloned", func(s string) (string, error) {
			r, err := ParseRevokeReason("reason", s, RevokeDeviceReasons)
			return string(r), err
		}, "cloned"},
		{"device revoke cessation refused", "cessationOfOperation", func(s string) (string, error) {
			r, err := ParseRevokeReason("reason", s, RevokeDeviceReasons)
			return string(r), err
		}, ""},
		{"CA revoke stolen refused", "stolen", func(s string) (string, error) {
			r, err := ParseRevokeReason("reason", s, RevokeCAReasons)
			return string(r), err
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.parse(tt.in)
			if tt.want != "" {
				if err != nil || got != tt.want {
					t.Fatalf("got %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			e, ok := tacerr.As(err)
			if !ok || e.Code != tacerr.InvalidInput || e.Field != "reason" {
				t.Fatalf("error = %v, want invalid_input naming reason", err)
			}
		})
	}
	_, err := ParseVoidReason("reason", "lost")
	if want := `"lost" is not a void reason: use scrapped, test, rework or other`; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v does not say %q", err, want)
	}
}
