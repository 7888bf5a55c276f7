package verifybench_test

import (
	"context"
	"testing"
	"time"

	"github.com/tacline/tacline/bench/verifybench"
)

// TestRun: a short run measures every phase on a real environment; the
// checks it times are genuine (Run fails otherwise) and the CRL verifies.
func TestRun(t *testing.T) {
	res, err := verifybench.Run(context.Background(), verifybench.Options{Dir: t.TempDir(), Duration: 100 * time.Millisecond, CRLEntries: 1000, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]verifybench.Rate{"offline 1": res.Offline1, "offline N": res.OfflineN, "online 1": res.Online1, "online N": res.OnlineN, "ecdsa": res.ECDSA1} {
		if r.Ops == 0 || r.PerSecond <= 0 || r.MicrosOp <= 0 {
			t.Errorf("%s: %+v", name, r)
		}
	}
	if res.OfflineN.Workers != 2 || res.ChainCertificates != 3 || res.OfflineCostRatio <= 0 {
		t.Errorf("result %+v", res)
	}
	if res.CRLEntries != 1000 || !res.CRLVerified || res.CRLBytes < 1000*30 {
		t.Errorf("CRL: %d entries, %d bytes, verified %v", res.CRLEntries, res.CRLBytes, res.CRLVerified)
	}
	if _, err := verifybench.Run(context.Background(), verifybench.Options{Dir: t.TempDir()}); err == nil {
		t.Error("zero duration accepted")
	}
}
