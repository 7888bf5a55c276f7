package server

import (
	"context"
	"os"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/internal/pemblock"
	"github.com/tacline/tacline/tacerr"
)

// opsCollector exports, at scrape time, what deploy/prometheus/alerts.yml
// needs beyond the API's own metrics: the HSM's health, the audit log's
// checkpoint age, certificate expiry, the build and the active issuer (so
// that replicas that disagree show up).
type opsCollector struct {
	s *Server
}

var (
	descBuild        = prometheus.NewDesc("tacline_build_info", "1, labelled with the tacline version and Go version of this process.", []string{"version", "goversion"}, nil)
	descHSMUp        = prometheus.NewDesc("tacline_hsm_up", "1 if the HSM health probe (one signature) succeeded at scrape time.", nil, nil)
	descHSMProbe     = prometheus.NewDesc("tacline_hsm_probe_seconds", "Time the HSM health probe took at scrape time.", nil, nil)
	descAuditHead    = prometheus.NewDesc("tacline_audit_events", "Events in the audit log.", nil, nil)
	descAuditCPSize  = prometheus.NewDesc("tacline_audit_checkpoint_size", "Size of the newest signed audit checkpoint.", nil, nil)
	descAuditCPTime  = prometheus.NewDesc("tacline_audit_checkpoint_timestamp_seconds", "When the newest audit checkpoint was signed (Unix time; 0: never).", nil, nil)
	descIssuerExpiry = prometheus.NewDesc("tacline_issuer_not_after_timestamp_seconds", "notAfter of each issuer certificate in the ledger (Unix time).", []string{"key_id", "kind"}, nil)
	descTLSExpiry    = prometheus.NewDesc("tacline_server_cert_not_after_timestamp_seconds", "notAfter of the server's TLS certificate (server.tls_cert, Unix time).", nil, nil)
	descActive       = prometheus.NewDesc("tacline_device_issuer_active", "1 for the device issuer this server issues under, labelled with its key id (replicas that disagree show two).", []string{"key_id"}, nil)
	descOpsUp        = prometheus.NewDesc("tacline_ops_status_up", "1 if the ledger could be read for the audit and issuer metrics at scrape time.", nil, nil)
)

// BuildVersion is the version tacline_build_info reports (set by cmd/tacline).
var BuildVersion = "unknown"

func (c opsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBuild, descHSMUp, descHSMProbe, descAuditHead, descAuditCPSize, descAuditCPTime, descIssuerExpiry, descTLSExpiry, descActive, descOpsUp} {
		ch <- d
	}
}

func (c opsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	ch <- prometheus.MustNewConstMetric(descBuild, prometheus.GaugeValue, 1, BuildVersion, runtime.Version())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	h := s.Token.Health(ctx)
	ch <- prometheus.MustNewConstMetric(descHSMProbe, prometheus.GaugeValue, time.Since(start).Seconds())
	ch <- prometheus.MustNewConstMetric(descHSMUp, prometheus.GaugeValue, b2f(h.OK))
	up := true
	if st, err := audit.ReadStats(ctx, s.DB); err == nil {
		ch <- prometheus.MustNewConstMetric(descAuditHead, prometheus.GaugeValue, float64(st.HeadSize))
		ch <- prometheus.MustNewConstMetric(descAuditCPSize, prometheus.GaugeValue, float64(st.CheckpointSize))
		at := 0.0
		if !st.CheckpointAt.IsZero() {
			at = float64(st.CheckpointAt.UnixMilli()) / 1000
		}
		ch <- prometheus.MustNewConstMetric(descAuditCPTime, prometheus.GaugeValue, at)
	} else {
		up = false
	}
	if recs, err := s.DB.Issuers(ctx); err == nil {
		for _, r := range recs {
			if na, ok := notAfter([]byte(r.CertPEM)); ok {
				ch <- prometheus.MustNewConstMetric(descIssuerExpiry, prometheus.GaugeValue, float64(na.Unix()), r.KeyID, r.Kind)
			}
		}
	} else {
		up = false
	}
	if b, err := os.ReadFile(s.cfg.Server.TLSCert); err == nil {
		if na, ok := notAfter(b); ok {
			ch <- prometheus.MustNewConstMetric(descTLSExpiry, prometheus.GaugeValue, float64(na.Unix()))
		}
	}
	if a := s.issuers.status().Active; a != "" {
		ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, 1, a)
	}
	ch <- prometheus.MustNewConstMetric(descOpsUp, prometheus.GaugeValue, b2f(up))
}

func notAfter(pemData []byte) (time.Time, bool) {
	certs, err := pemblock.Certificates(pemData, tacerr.InvalidConfig, "server.tls_cert")
	if err != nil {
		return time.Time{}, false
	}
	return certs[0].NotAfter, true
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
