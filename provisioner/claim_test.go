package provisioner_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/provisioner/provtest"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
)

// TestAlreadyProvisionedIMEIs: device_already_provisioned lists the
// IMEIs of the device as recorded, which a station may program. A device
// whose first request is still pending (its signature failed) has none
// yet: the IMEIs reserved for it are voided if that request is abandoned,
// so they must not be handed out, and the message must say the device is
// being provisioned (replay that request), not that it is provisioned
// (reissue). IMEIs of an abandoned earlier attempt for the same serial are
// not the device's either.
func TestAlreadyProvisionedIMEIs(t *testing.T) {
	storetest.ForEachDialect(t, func(t *testing.T, d store.Dialect) {
		var fs *provtest.FaultySigner
		env := provtest.New(t, d, provtest.WithFaultySigner(&fs))
		ctx := t.Context()
		fs.Down.Store(true)
		_, err := provision(env, "S1", "ap-1", "SN-AP", provtest.NewDevice(t))
		wantCode(t, err, tacerr.HSMUnavailable)
		fs.Down.Store(false)

		existing := func(err error) []string {
			t.Helper()
			wantCode(t, err, tacerr.DeviceAlreadyProvisioned)
			var ap *provisioner.AlreadyProvisionedError
			if !errors.As(err, &ap) {
				t.Fatalf("%v is not an AlreadyProvisionedError", err)
			}
			var out []string
			for _, m := range ap.ExistingIMEIs() {
				out = append(out, m.String())
			}
			return out
		}
		_, err = provision(env, "S1", "ap-2", "SN-AP", provtest.NewDevice(t))
		if got := existing(err); len(got) != 0 {
			t.Fatalf("a device whose provisioning is pending was answered with IMEIs %v, which recovery voids", got)
		}
		if msg := err.Error(); !strings.Contains(msg, "being provisioned") || strings.Contains(msg, "reissue") {
			t.Fatalf("message for a pending device: %q, want it to say the device is being provisioned, not to reissue it", msg)
		}

		env.Clock.Add(6 * time.Minute)
		if n, err := env.Service.Recover(ctx); err != nil || n != 2 {
			t.Fatalf("recovery voided %d (%v), want 2", n, err)
		}
		out, err := provision(env, "S1", "ap-3", "SN-AP", provtest.NewDevice(t))
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, m := range out.IMEIs {
			want = append(want, m.String())
		}
		_, err = provision(env, "S1", "ap-4", "SN-AP", provtest.NewDevice(t))
		if got := existing(err); !slices.Equal(got, want) {
			t.Fatalf("existing IMEIs = %v, want the device's %v (not the abandoned attempt's)", got, want)
		}
		if !strings.Contains(err.Error(), "reissue") {
			t.Fatalf("message for a provisioned device: %q", err)
		}
		ledgerOK(t, env)
	})
}
