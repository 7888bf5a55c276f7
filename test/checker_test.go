package test

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/store"
)

// checkCheckerCatches proves that checkLedger is not vacuous: on copies of
// a real crash run's ledger and station records, each planted fault must
// be reported.
func checkCheckerCatches(t *testing.T, l *ledger, stations []*station) {
	t.Helper()
	idx := 0
	for i, s := range stations {
		if len(s.answered) > len(stations[idx].answered) {
			idx = i
		}
	}
	if len(stations[idx].answered) < 2 {
		t.Fatalf("no station received two answers; the checker cannot be exercised")
	}
	first := func(ss []*station) *answer { return &ss[idx].answered[0] }
	second := func(ss []*station) *answer { return &ss[idx].answered[1] }
	row := func(l *ledger, a *answer) *ledgerIMEI {
		m, err := imei.Parse(a.resp.IMEIs[0])
		if err != nil {
			t.Fatal(err)
		}
		return l.byIMEI[m]
	}
	for _, tc := range []struct {
		name   string
		mutate func(l *ledger, ss []*station)
		want   string // in one of the violations
	}{
		{name: "an IMEI received that the ledger gives another device", want: "received IMEI", mutate: func(l *ledger, ss []*station) {
			a := first(ss)
			a.resp.IMEIs = slices.Clone(a.resp.IMEIs)
			a.resp.IMEIs[0] = second(ss).resp.IMEIs[0]
		}},
		{name: "a certificate serial received twice", want: "received twice", mutate: func(l *ledger, ss []*station) {
			first(ss).resp.CertificateSerial = second(ss).resp.CertificateSerial
		}},
		{name: "a certificate received that differs from the ledger's", want: "differs from the ledger's", mutate: func(l *ledger, ss []*station) {
			first(ss).resp.Certificate = second(ss).resp.Certificate
		}},
		{name: "a certificate for another key than the station's device key", want: "certifies another key", mutate: func(l *ledger, ss []*station) {
			dev, err := factory.NewDevice(first(ss).req.DeviceSerial)
			if err != nil {
				t.Fatal(err)
			}
			ss[idx].devices[dev.Serial()] = dev
		}},
		{name: "an IMEI bound to two devices", want: "names", mutate: func(l *ledger, ss []*station) {
			r := row(l, first(ss))
			r.DeviceSerial, r.CertSerial = second(ss).req.DeviceSerial, second(ss).resp.CertificateSerial
		}},
		{name: "an answered request left RESERVED", want: "RESERVED for request", mutate: func(l *ledger, ss []*station) {
			row(l, first(ss)).State = store.StateReserved
		}},
		{name: "an answered request's IMEI voided", want: "VOIDED", mutate: func(l *ledger, ss []*station) {
			r := row(l, first(ss))
			r.State, r.Reason = store.StateVoided, "abandoned"
		}},
		{name: "a certificate serial issued twice", want: "issued twice", mutate: func(l *ledger, ss []*station) {
			c := *l.certs[first(ss).resp.CertificateSerial]
			c.Serial = "00" + c.Serial
			l.certs[c.Serial] = &c
		}},
		{name: "a binding reported to the register twice", want: "register outbox holds 2", mutate: func(l *ledger, ss []*station) {
			l.outbox[outboxKey{row(l, first(ss)).IMEI14, "registered"}]++
		}},
		{name: "an answered intent still pending", want: "its issuance is", mutate: func(l *ledger, ss []*station) {
			l.issuances[first(ss).req.RequestID].State = store.IssuancePending
		}},
	} {
		t.Run("checker catches "+tc.name, func(t *testing.T) {
			l2, ss := cloneLedger(l), cloneStations(stations)
			tc.mutate(l2, ss)
			_, violations := checkLedger(l2, ss)
			if !slices.ContainsFunc(violations, func(v string) bool { return strings.Contains(v, tc.want) }) {
				t.Fatalf("planted fault not reported as %q; violations: %q", tc.want, violations)
			}
		})
	}
}

func cloneLedger(l *ledger) *ledger {
	c := &ledger{imeis: slices.Clone(l.imeis), byIMEI: map[imei.IMEI]*ledgerIMEI{}, certs: map[string]*ledgerCert{},
		devices: map[string]*ledgerDevice{}, issuances: map[string]*ledgerIssuance{}}
	for i := range c.imeis {
		c.byIMEI[c.imeis[i].imei] = &c.imeis[i]
	}
	for k, v := range l.certs {
		x := *v
		c.certs[k] = &x
	}
	for k, v := range l.devices {
		x := *v
		c.devices[k] = &x
	}
	for k, v := range l.issuances {
		x := *v
		c.issuances[k] = &x
	}
	c.outbox = maps.Clone(l.outbox)
	return c
}

// cloneStations copies what checkLedger reads of the stations.
func cloneStations(stations []*station) []*station {
	var out []*station
	for _, s := range stations {
		out = append(out, &station{creds: s.creds, devices: maps.Clone(s.devices), answered: slices.Clone(s.answered), dropped: slices.Clone(s.dropped)})
	}
	return out
}
