package test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/lifecycle"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// Whole-ledger reads for the end-to-end checks. The store offers lookups by
// key; the crash test needs every row, read outside the server.
const (
	sqlLedgerIMEIs = `SELECT i.imei14, i.state, i.device_serial, i.cert_serial, i.reason, r.request_id
		FROM imeis i JOIN reservations r ON r.id = i.reservation_id ORDER BY i.imei14`
	sqlLedgerCerts = `SELECT serial, device_serial, request_id, der,
		CASE WHEN revoked_at IS NULL THEN 0 ELSE 1 END AS revoked FROM certificates ORDER BY serial`
	sqlLedgerDevices   = `SELECT serial, state, cert_serial FROM devices ORDER BY serial`
	sqlLedgerIssuances = `SELECT request_id, device_serial, state, cert_serial FROM issuances ORDER BY request_id`
	sqlLedgerOutbox    = `SELECT imei14, event FROM register_outbox ORDER BY id`
)

// outboxKey counts the register outbox rows of one IMEI and event.
type outboxKey struct {
	imei14 int64
	event  string // registered | voided | revoked | updated
}

type ledgerIMEI struct {
	IMEI14       int64           `db:"imei14"`
	State        lifecycle.State `db:"state"`
	DeviceSerial string          `db:"device_serial"`
	CertSerial   string          `db:"cert_serial"`
	Reason       string          `db:"reason"`
	RequestID    string          `db:"request_id"`
	imei         imei.IMEI
}

type ledgerCert struct {
	Serial       string `db:"serial"`
	DeviceSerial string `db:"device_serial"`
	RequestID    string `db:"request_id"`
	DER          []byte `db:"der"`
	Revoked      int    `db:"revoked"`
	cert         *x509.Certificate
}

type ledgerDevice struct {
	Serial     string          `db:"serial"`
	State      lifecycle.State `db:"state"`
	CertSerial string          `db:"cert_serial"`
}

type ledgerIssuance struct {
	RequestID    string `db:"request_id"`
	DeviceSerial string `db:"device_serial"`
	State        string `db:"state"`
	CertSerial   string `db:"cert_serial"`
}

// ledger is a snapshot of the whole ledger, keyed for the checks.
type ledger struct {
	imeis     []ledgerIMEI
	byIMEI    map[imei.IMEI]*ledgerIMEI
	certs     map[string]*ledgerCert // by serial
	devices   map[string]*ledgerDevice
	issuances map[string]*ledgerIssuance
	outbox    map[outboxKey]int
}

func readLedger(t *testing.T, ctx context.Context, db *store.DB) *ledger {
	t.Helper()
	r := storetest.Reader(db)
	l := &ledger{byIMEI: map[imei.IMEI]*ledgerIMEI{}, certs: map[string]*ledgerCert{}, devices: map[string]*ledgerDevice{},
		issuances: map[string]*ledgerIssuance{}}
	if err := r.SelectContext(ctx, &l.imeis, r.Rebind(sqlLedgerIMEIs)); err != nil {
		t.Fatalf("read imeis: %v", err)
	}
	for i := range l.imeis {
		m, err := imei.FromUint64(uint64(l.imeis[i].IMEI14))
		if err != nil {
			t.Fatalf("ledger row %d: %v", l.imeis[i].IMEI14, err)
		}
		l.imeis[i].imei = m
		l.byIMEI[m] = &l.imeis[i]
	}
	var certs []ledgerCert
	if err := r.SelectContext(ctx, &certs, r.Rebind(sqlLedgerCerts)); err != nil {
		t.Fatalf("read certificates: %v", err)
	}
	for i := range certs {
		c, err := x509.ParseCertificate(certs[i].DER)
		if err != nil {
			t.Fatalf("certificate %s in the ledger does not parse: %v", certs[i].Serial, err)
		}
		certs[i].cert = c
		l.certs[certs[i].Serial] = &certs[i]
	}
	var devs []ledgerDevice
	if err := r.SelectContext(ctx, &devs, r.Rebind(sqlLedgerDevices)); err != nil {
		t.Fatalf("read devices: %v", err)
	}
	for i := range devs {
		l.devices[devs[i].Serial] = &devs[i]
	}
	var iss []ledgerIssuance
	if err := r.SelectContext(ctx, &iss, r.Rebind(sqlLedgerIssuances)); err != nil {
		t.Fatalf("read issuances: %v", err)
	}
	for i := range iss {
		l.issuances[iss[i].RequestID] = &iss[i]
	}
	var out []struct {
		IMEI14 int64  `db:"imei14"`
		Event  string `db:"event"`
	}
	if err := r.SelectContext(ctx, &out, r.Rebind(sqlLedgerOutbox)); err != nil {
		t.Fatalf("read the register outbox: %v", err)
	}
	l.outbox = map[outboxKey]int{}
	for _, o := range out {
		l.outbox[outboxKey{o.IMEI14, o.Event}]++
	}
	return l
}

// errs collects violations.
type errs struct{ list []string }

func (e *errs) add(format string, args ...any) { e.list = append(e.list, fmt.Sprintf(format, args...)) }

// requireNone fails the test with the violations found, if any.
func requireNone(t *testing.T, violations []string) {
	t.Helper()
	for i, v := range violations {
		if i == 25 {
			t.Fatalf("%d violations in all (first 25 shown)", len(violations))
		}
		t.Error(v)
	}
	if len(violations) > 0 {
		t.FailNow()
	}
}

// sanIMEIs returns the IMEIs a certificate's SAN names, or an error for
// any URI that is not an IMEI URN.
func sanIMEIs(c *x509.Certificate) ([]imei.IMEI, error) {
	var out []imei.IMEI
	for _, u := range c.URIs {
		m, err := imei.ParseURN(u.String())
		if err != nil {
			return nil, fmt.Errorf("SAN URI %q: %v", u, err)
		}
		out = append(out, m)
	}
	slices.SortFunc(out, imei.IMEI.Compare)
	return out, nil
}

// leftovers are what unanswered requests left in the ledger.
type leftovers struct {
	requests map[string]bool // request ids of pending intents or RESERVED IMEIs
	imeis    []imei.IMEI     // RESERVED IMEIs
}

// checkLedger proves the crash test's claims on a ledger snapshot:
//   - no IMEI on two devices, no certificate serial twice;
//   - every BOUND IMEI has its device's current certificate, whose SAN
//     names exactly the device's BOUND IMEIs and whose key is the key the
//     station generated for that device serial;
//   - every answer a station received is in the ledger as received;
//   - RESERVED IMEIs and pending intents belong only to requests the
//     stations gave up without an answer; VOIDED IMEIs only to those, with
//     reason abandoned;
//   - the register hears of each transition exactly once: one outbox row
//     "registered" per BOUND IMEI, one "voided" per VOIDED IMEI, none for
//     a RESERVED one (replays after crashes add nothing).
func checkLedger(l *ledger, stations []*station) (leftovers, []string) {
	e := &errs{}
	keys := map[string]*stationDevice{}
	dropped := map[string]bool{}
	for _, s := range stations {
		for serial, d := range s.devices {
			keys[serial] = &stationDevice{station: s.creds.ID, pub: d.Public()}
		}
		for _, p := range s.dropped {
			dropped[p.req.RequestID] = true
		}
	}

	// Certificates: serials unique (the column and the DER), subject and
	// key are the station's device, SAN IMEIs on one device only.
	derSerials := map[string]string{}
	sanOwner := map[imei.IMEI]string{}
	for serial, c := range l.certs {
		hexSerial := hex.EncodeToString(c.cert.SerialNumber.Bytes())
		if hexSerial != serial {
			e.add("certificate row %s holds a certificate with serial %s", serial, hexSerial)
		}
		if other, ok := derSerials[hexSerial]; ok {
			e.add("certificate serial %s issued twice (rows %s and %s)", hexSerial, other, serial)
		}
		derSerials[hexSerial] = serial
		if c.cert.Subject.SerialNumber != c.DeviceSerial {
			e.add("certificate %s: subject serialNumber %q, ledger device %q", serial, c.cert.Subject.SerialNumber, c.DeviceSerial)
		}
		sd := keys[c.DeviceSerial]
		if sd == nil {
			e.add("certificate %s is for device %q, which no station made", serial, c.DeviceSerial)
		} else if pub, ok := c.cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(sd.pub) {
			e.add("certificate %s certifies another key than the one station %s generated for device %s", serial, sd.station, c.DeviceSerial)
		}
		ims, err := sanIMEIs(c.cert)
		if err != nil {
			e.add("certificate %s: %v", serial, err)
		}
		for _, m := range ims {
			if other, ok := sanOwner[m]; ok && other != c.DeviceSerial {
				e.add("IMEI %s is certified for two devices: %s and %s", m, other, c.DeviceSerial)
			}
			sanOwner[m] = c.DeviceSerial
		}
	}

	// IMEI rows: BOUND ones against their device and certificate; the
	// others only for requests given up.
	bound := map[string][]imei.IMEI{}
	left := leftovers{requests: map[string]bool{}}
	for i := range l.imeis {
		r := &l.imeis[i]
		switch r.State {
		case store.StateBound:
			if r.DeviceSerial == "" || r.CertSerial == "" {
				e.add("IMEI %s is BOUND without device (%q) or certificate (%q)", r.imei, r.DeviceSerial, r.CertSerial)
				continue
			}
			bound[r.DeviceSerial] = append(bound[r.DeviceSerial], r.imei)
			d := l.devices[r.DeviceSerial]
			if d == nil || d.State != store.StateBound || d.CertSerial != r.CertSerial {
				e.add("IMEI %s is BOUND to device %s with certificate %s, but the device record is %+v", r.imei, r.DeviceSerial, r.CertSerial, d)
			}
			if c := l.certs[r.CertSerial]; c == nil || c.Revoked != 0 || c.DeviceSerial != r.DeviceSerial {
				e.add("IMEI %s is BOUND with certificate %s, which is missing, revoked or for another device", r.imei, r.CertSerial)
			}
		case store.StateReserved:
			if !dropped[r.RequestID] {
				e.add("IMEI %s is RESERVED for request %s, which a station still waits for or was answered", r.imei, r.RequestID)
			}
			left.requests[r.RequestID] = true
			left.imeis = append(left.imeis, r.imei)
		case store.StateVoided:
			if !dropped[r.RequestID] || r.Reason != "abandoned" {
				e.add("IMEI %s is VOIDED (reason %q) for request %s; only IMEIs of requests given up may be voided, as abandoned", r.imei, r.Reason, r.RequestID)
			}
		default:
			e.add("IMEI %s is %s; nothing in this test revokes", r.imei, r.State)
		}
	}
	checkOutbox(e, l)
	for serial, ims := range bound {
		d := l.devices[serial]
		if d == nil || l.certs[d.CertSerial] == nil {
			continue // reported above
		}
		c := l.certs[d.CertSerial]
		san, err := sanIMEIs(c.cert)
		if err == nil && !slices.Equal(san, ims) {
			e.add("device %s: BOUND IMEIs %v, its certificate %s names %v", serial, ims, c.Serial, san)
		}
	}
	for serial, d := range l.devices {
		if len(bound[serial]) == 0 {
			e.add("device %s (%s) has no BOUND IMEI", serial, d.State)
		}
	}
	for id, is := range l.issuances {
		if is.State == store.IssuanceIssued {
			continue
		}
		if !dropped[id] {
			e.add("issuance %s is %s, but its request was answered or is still awaited", id, is.State)
		}
		if is.State == store.IssuancePending {
			left.requests[id] = true
		}
	}

	// What the stations received is in the ledger as received.
	gotIMEI := map[string]string{}
	gotSerial := map[string]string{}
	for _, s := range stations {
		for _, a := range s.answered {
			checkAnswer(e, l, a, bound[a.req.DeviceSerial], gotIMEI, gotSerial)
		}
	}
	return left, e.list
}

type stationDevice struct {
	station string
	pub     crypto.PublicKey
}

// checkAnswer finds one answer in the ledger exactly as received; held is
// what the ledger binds to the device, in IMEI order.
func checkAnswer(e *errs, l *ledger, a answer, held []imei.IMEI, gotIMEI, gotSerial map[string]string) {
	id, serial := a.req.RequestID, a.req.DeviceSerial
	if a.resp.DeviceSerial != serial {
		e.add("request %s for device %s was answered for device %s", id, serial, a.resp.DeviceSerial)
	}
	if other, ok := gotSerial[a.resp.CertificateSerial]; ok {
		e.add("certificate serial %s received twice (requests %s and %s)", a.resp.CertificateSerial, other, id)
	}
	gotSerial[a.resp.CertificateSerial] = id
	var want []imei.IMEI
	for _, s := range a.resp.IMEIs {
		if other, ok := gotIMEI[s]; ok {
			e.add("IMEI %s received twice (requests %s and %s)", s, other, id)
		}
		gotIMEI[s] = id
		m, err := imei.Parse(s)
		if err != nil {
			e.add("request %s: received IMEI %q: %v", id, s, err)
			continue
		}
		want = append(want, m)
		r := l.byIMEI[m]
		if r == nil || r.State != store.StateBound || r.DeviceSerial != serial || r.CertSerial != a.resp.CertificateSerial || r.RequestID != id {
			e.add("request %s received IMEI %s for device %s with certificate %s; the ledger has %+v", id, s, serial, a.resp.CertificateSerial, r)
		}
	}
	c := l.certs[a.resp.CertificateSerial]
	block, _ := pem.Decode([]byte(a.resp.Certificate))
	switch {
	case c == nil:
		e.add("request %s received certificate %s, which the ledger does not hold", id, a.resp.CertificateSerial)
	case block == nil || !bytes.Equal(block.Bytes, c.DER):
		e.add("request %s received a certificate %s that differs from the ledger's", id, a.resp.CertificateSerial)
	case c.RequestID != id || c.DeviceSerial != serial:
		e.add("certificate %s: ledger request %s device %s, received for request %s device %s", c.Serial, c.RequestID, c.DeviceSerial, id, serial)
	}
	if d := l.devices[serial]; d == nil || d.CertSerial != a.resp.CertificateSerial {
		e.add("device %s received certificate %s; the ledger's device record is %+v", serial, a.resp.CertificateSerial, d)
	}
	if is := l.issuances[id]; is == nil || is.State != store.IssuanceIssued || is.CertSerial != a.resp.CertificateSerial {
		e.add("request %s was answered; its issuance is %+v", id, is)
	}
	slices.SortFunc(want, imei.IMEI.Compare)
	if !slices.Equal(held, want) {
		e.add("device %s received IMEIs %s; the ledger binds %v to it", serial, strings.Join(a.resp.IMEIs, ","), held)
	}
}

// checkOutbox requires one register outbox row per transition of each IMEI.
func checkOutbox(e *errs, l *ledger) {
	want := map[outboxKey]int{}
	for _, r := range l.imeis {
		switch r.State {
		case store.StateBound:
			want[outboxKey{r.IMEI14, "registered"}] = 1
		case store.StateVoided:
			want[outboxKey{r.IMEI14, "voided"}] = 1
		}
	}
	for k, n := range l.outbox {
		if want[k] != n {
			e.add("register outbox holds %d %q rows for IMEI %s, want %d", n, k.event, fmtIMEI14(k.imei14), want[k])
		}
	}
	for k, n := range want {
		if l.outbox[k] == 0 {
			e.add("register outbox holds no %q row for IMEI %s, want %d", k.event, fmtIMEI14(k.imei14), n)
		}
	}
}

func fmtIMEI14(v int64) string {
	if m, err := imei.FromUint64(uint64(v)); err == nil {
		return m.String()
	}
	return fmt.Sprintf("%014d", v)
}
