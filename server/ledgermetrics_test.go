package server_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tacline/tacline/devenv"
)

// metricOf reads the one sample of an unlabelled metric from the server's
// registry.
func metricOf(t *testing.T, reg prometheus.Gatherer, name string) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0]
		}
	}
	t.Fatalf("metric %s not found", name)
	return nil
}

// metricValue is a counter's or a gauge's value.
func metricValue(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	m := metricOf(t, reg, name)
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return m.GetGauge().GetValue()
}

// histogramCount is a histogram's sample count.
func histogramCount(t *testing.T, reg prometheus.Gatherer, name string) uint64 {
	t.Helper()
	return metricOf(t, reg, name).GetHistogram().GetSampleCount()
}

// TestLedgerMetricsCountEveryWrite: after devices are provisioned, the
// ledger's metrics have seen every group-commit member once (a queue wait
// each, the members counted by their batches), at least the two writes of
// each device (its reservation and its binding), in no more batches than
// members.
func TestLedgerMetricsCountEveryWrite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env, err := devenv.Setup(ctx, devenv.Options{Dir: filepath.Join(t.TempDir(), "env"), Stations: 1})
	if err != nil {
		t.Fatal(err)
	}
	srv, url := serve(ctx, t, env)
	reg := srv.Registry
	members0 := metricValue(t, reg, "tacline_ledger_batch_members_total")
	queued0 := histogramCount(t, reg, "tacline_ledger_queue_seconds")
	batches0 := histogramCount(t, reg, "tacline_ledger_batch_seconds")
	const devices = 20
	if _, err := devenv.ProvisionDevices(ctx, env, url, devices, filepath.Join(t.TempDir(), "keys")); err != nil {
		t.Fatal(err)
	}
	members := metricValue(t, reg, "tacline_ledger_batch_members_total") - members0
	queued := histogramCount(t, reg, "tacline_ledger_queue_seconds") - queued0
	batches := histogramCount(t, reg, "tacline_ledger_batch_seconds") - batches0
	if members < 2*devices {
		t.Fatalf("batches carried %v ledger writes for %d devices, want at least %d (a reservation and a binding each)", members, devices, 2*devices)
	}
	if float64(queued) != members {
		t.Fatalf("%d queue waits observed for %v members", queued, members)
	}
	if batches == 0 || float64(batches) > members {
		t.Fatalf("%d batches for %v members", batches, members)
	}
}
