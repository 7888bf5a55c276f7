package api

import (
	"encoding/base64"
	"strings"
	"time"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/store"
)

// Conversions from the provisioner's types to the wire types.

// certPEM encodes a certificate as PEM, byte for byte what
// pem.EncodeToMemory writes, in a fraction of its time (it is on the path of
// every provisioning answer).
func certPEM(der []byte) string {
	if len(der) == 0 {
		return ""
	}
	const head, tail = "-----BEGIN CERTIFICATE-----\n", "-----END CERTIFICATE-----\n"
	n := base64.StdEncoding.EncodedLen(len(der))
	var b strings.Builder
	b.Grow(len(head) + n + (n+63)/64 + len(tail))
	b.WriteString(head)
	// 48 bytes of DER are one 64-character line: each line is encoded on
	// the stack and written, with no copy of the whole encoding.
	var line [65]byte
	for len(der) > 0 {
		k := min(len(der), 48)
		m := base64.StdEncoding.EncodedLen(k)
		base64.StdEncoding.Encode(line[:m], der[:k])
		line[m] = '\n'
		b.Write(line[:m+1])
		der = der[k:]
	}
	b.WriteString(tail)
	return b.String()
}

func issuedResponse(iss *provisioner.Issued) wire.ProvisionResponse {
	der := iss.CertDER
	if len(der) == 0 && iss.Certificate != nil {
		der = iss.Certificate.Raw
	}
	return wire.ProvisionResponse{
		DeviceSerial:      iss.DeviceSerial,
		IMEIs:             imeiStrings(iss.IMEIs),
		Certificate:       certPEM(der),
		Chain:             iss.ChainPEM,
		CertificateSerial: iss.CertSerial,
		IssuedAt:          iss.IssuedAt.UTC(),
	}
}

// timePtr is nil for the zero time.
func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func imeiStatus(r store.IMEIRecord) wire.IMEIStatus {
	return wire.IMEIStatus{
		IMEI:              r.IMEI.String(),
		State:             string(r.State),
		Pool:              r.Pool,
		TAC:               r.IMEI.TACString(),
		DeviceSerial:      r.DeviceSerial,
		CertificateSerial: r.CertSerial,
		Station:           r.Caller,
		Reason:            r.Reason,
		ReservedAt:        r.ReservedAt.UTC(),
		BoundAt:           timePtr(r.BoundAt),
		VoidedAt:          timePtr(r.VoidedAt),
		RevokedAt:         timePtr(r.RevokedAt),
	}
}

// deviceStatus converts d; the IMEIs' records are added by the caller.
func deviceStatus(d *provisioner.Device) wire.DeviceStatus {
	return wire.DeviceStatus{
		DeviceSerial:      d.Serial,
		State:             string(d.State),
		IMEIs:             make([]wire.IMEIStatus, 0, len(d.IMEIs)),
		Certificate:       certPEM(d.CertDER),
		CertificateSerial: d.CertSerial,
		Station:           d.Station,
		Pool:              d.Pool,
		BoundAt:           timePtr(d.BoundAt),
		RevokedAt:         timePtr(d.RevokedAt),
		Reason:            d.Reason,
	}
}

func poolStatus(p store.PoolStats) wire.PoolStatus {
	return wire.PoolStatus{
		Name:          p.Name,
		TAC:           imei.FormatTAC(p.TAC),
		SNRStart:      p.SNRStart,
		SNREnd:        p.SNREnd,
		HighWaterMark: p.NextSNR,
		Factory:       p.Factory,
		Line:          p.Line,
		Product:       p.Product,
		Market:        p.Market,
		Reserved:      p.Reserved,
		Bound:         p.Bound,
		Voided:        p.Voided,
		Revoked:       p.Revoked,
		Free:          p.Free,
	}
}
