package policy

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/tacerr"
)

var testDevice = Device{
	Serial:       "SN-0001",
	Manufacturer: "Acme Devices",
	Model:        "Widget 5G",
	IMEIs:        []imei.IMEI{imei.MustParse("490154203237518"), imei.MustParse("357805023984942")},
}

func wantField(t *testing.T, err error, code tacerr.Code, field string) {
	t.Helper()
	e, ok := tacerr.As(err)
	if !ok || e.Code != code || e.Field != field {
		t.Fatalf("err = %v, want %s on field %q", err, code, field)
	}
}

func TestDefaultProfileValid(t *testing.T) {
	t.Parallel()
	if err := DefaultProfile().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeProfile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		yaml  string
		code  tacerr.Code
		field string // expected field at fault; empty with code "" means valid
		check func(t *testing.T, p Profile)
	}{
		{name: "empty keeps defaults", yaml: "", check: func(t *testing.T, p Profile) {
			if p.NotAfter != NoWellDefinedExpiration || !p.SubjectKeyID || p.HWType != DefaultHWType {
				t.Fatalf("defaults lost: %+v", p)
			}
		}},
		{name: "all fields", yaml: "common_name: Sensor\nhw_type: 1.3.6.1.4.1.99999.1\nkey_agreement: true\nsubject_key_id: false\next_key_usage: [client_auth, 1.3.6.1.4.1.99999.2]\nbackdate: 5m\nnot_after: 87600h\n",
			check: func(t *testing.T, p Profile) {
				if p.CommonName != "Sensor" || !p.KeyAgreement || p.SubjectKeyID || p.Backdate != 5*time.Minute || p.NotAfter != "87600h" || len(p.ExtKeyUsage) != 2 {
					t.Fatalf("decoded %+v", p)
				}
			}},
		{name: "unknown field", yaml: "common_nme: x\n", code: tacerr.InvalidConfig},
		{name: "bad hw_type", yaml: "hw_type: not.an.oid\n", code: tacerr.InvalidConfig, field: "profile.hw_type"},
		{name: "empty hw_type", yaml: "hw_type: \"\"\n", code: tacerr.InvalidConfig, field: "profile.hw_type"},
		{name: "bad eku", yaml: "ext_key_usage: [client_auth, tls]\n", code: tacerr.InvalidConfig, field: "profile.ext_key_usage[1]"},
		{name: "negative backdate", yaml: "backdate: -1m\n", code: tacerr.InvalidConfig, field: "profile.backdate"},
		{name: "ftp CRL URL", yaml: "crl_distribution_point: ftp://pki.example/x.crl\n", code: tacerr.InvalidConfig, field: "profile.crl_distribution_point"},
		{name: "relative OCSP URL", yaml: "ocsp_url: /v1/ocsp\n", code: tacerr.InvalidConfig, field: "profile.ocsp_url"},
		{name: "non-ASCII caIssuers URL", yaml: "ca_issuers_url: http://pki.example/ca-\u00e9.der\n", code: tacerr.InvalidConfig, field: "profile.ca_issuers_url"},
		{name: "bad not_after", yaml: "not_after: forever\n", code: tacerr.InvalidConfig, field: "profile.not_after"},
		{name: "UTCTime-style not_after", yaml: "not_after: 491231235959Z\n", code: tacerr.InvalidConfig, field: "profile.not_after"},
		{name: "long common_name", yaml: "common_name: " + strings.Repeat("x", 65) + "\n", code: tacerr.InvalidConfig, field: "profile.common_name"},
		{name: "non-printable common_name", yaml: "common_name: \"caf\u00e9\"\n", code: tacerr.InvalidConfig, field: "profile.common_name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := DecodeProfile([]byte(tc.yaml))
			if tc.code == "" {
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, p)
				return
			}
			wantField(t, err, tc.code, tc.field)
		})
	}
}

func TestCheckDevice(t *testing.T) {
	t.Parallel()
	mod := func(f func(d *Device)) Device {
		d := testDevice
		d.IMEIs = append([]imei.IMEI(nil), testDevice.IMEIs...)
		f(&d)
		return d
	}
	tests := []struct {
		name  string
		dev   Device
		code  tacerr.Code
		field string
	}{
		{name: "valid", dev: testDevice},
		{name: "no serial", dev: mod(func(d *Device) { d.Serial = "" }), code: tacerr.InvalidInput, field: "device_serial"},
		{name: "serial with underscore", dev: mod(func(d *Device) { d.Serial = "SN_1" }), code: tacerr.InvalidInput, field: "device_serial"},
		{name: "long manufacturer", dev: mod(func(d *Device) { d.Manufacturer = strings.Repeat("m", 65) }), code: tacerr.InvalidInput, field: "manufacturer"},
		{name: "no model", dev: mod(func(d *Device) { d.Model = "" }), code: tacerr.InvalidInput, field: "model"},
		{name: "no IMEI", dev: mod(func(d *Device) { d.IMEIs = nil }), code: tacerr.InvalidInput, field: "imeis"},
		{name: "six IMEIs", dev: mod(func(d *Device) { d.IMEIs = make([]imei.IMEI, 6) }), code: tacerr.InvalidInput, field: "imeis"},
		{name: "duplicate IMEI", dev: mod(func(d *Device) { d.IMEIs[1] = d.IMEIs[0] }), code: tacerr.InvalidInput, field: "imeis[1]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := CheckDevice(tc.dev)
			if tc.code == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantField(t, err, tc.code, tc.field)
		})
	}
}

func TestNewSerial(t *testing.T) {
	t.Parallel()
	rnd := bytes.Repeat([]byte{0xff}, 8)
	var prev *big.Int
	for i := 0; i < 1000; i++ {
		s, err := NewSerial(bytes.NewReader(rnd))
		if err != nil {
			t.Fatal(err)
		}
		der, _ := asn1.Marshal(s)
		if s.Sign() <= 0 || len(der)-2 != 16 || CheckSerial(s) != nil {
			t.Fatalf("serial %x encodes in %d octets", s, len(der)-2)
		}
		if b := s.Bytes(); !bytes.Equal(b[8:], rnd) {
			t.Fatalf("serial %x: the last 8 octets are not the random ones", s)
		}
		// the same random octets every time: only the clock keeps them apart and in order
		if prev != nil && s.Cmp(prev) <= 0 {
			t.Fatalf("serial %x drawn after %x is not greater", s, prev)
		}
		prev = s
	}
	if _, err := NewSerial(bytes.NewReader(make([]byte, 7))); err == nil {
		t.Fatal("a serial drawn from 7 random octets was accepted")
	}
	a, _ := NewSerial(nil)
	b, _ := NewSerial(nil)
	if a.Cmp(b) >= 0 || len(hex.EncodeToString(a.Bytes())) != 32 {
		t.Fatalf("serials %x then %x: not increasing or not 32 hex digits", a, b)
	}
}

func TestCheckSerial(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		s    *big.Int
		ok   bool
	}{
		{name: "nil", s: nil},
		{name: "zero", s: big.NewInt(0)},
		{name: "negative", s: big.NewInt(-5)},
		{name: "one", s: big.NewInt(1), ok: true},
		{name: "20 octets", s: new(big.Int).Lsh(big.NewInt(1), 158), ok: true},
		{name: "21 octets", s: new(big.Int).Lsh(big.NewInt(1), 159)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := CheckSerial(tc.s)
			if tc.ok != (err == nil) {
				t.Fatalf("CheckSerial(%v) = %v", tc.s, err)
			}
			if err != nil {
				wantField(t, err, tacerr.InvalidInput, "serial")
			}
		})
	}
}

// selfSign signs tmpl with a fresh key so the result can be parsed.
func selfSign(t *testing.T, tmpl *x509.Certificate, pub any) *x509.Certificate {
	t.Helper()
	ca, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	parent := &x509.Certificate{Subject: tmpl.Subject, SubjectKeyId: []byte{1, 2, 3}, PublicKey: ca.Public()}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, ca)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTemplate(t *testing.T) {
	t.Parallel()
	key := ecKey(t, elliptic.P256())
	issued := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	serial := big.NewInt(0x1234)
	custom := DefaultProfile()
	custom.CommonName = "Sensor"
	custom.KeyAgreement = true
	custom.SubjectKeyID = false
	custom.ExtKeyUsage = []EKU{"client_auth", "1.3.6.1.4.1.99999.2"}
	custom.NotAfter = "24h"
	custom.Backdate = 0
	tests := []struct {
		name  string
		p     Profile
		check func(t *testing.T, c *x509.Certificate)
	}{
		{name: "defaults", p: DefaultProfile(), check: func(t *testing.T, c *x509.Certificate) {
			if c.Subject.CommonName != "Widget 5G" || c.Subject.SerialNumber != "SN-0001" || c.Subject.Organization[0] != "Acme Devices" {
				t.Fatalf("subject %v", c.Subject)
			}
			if c.KeyUsage != x509.KeyUsageDigitalSignature || len(c.ExtKeyUsage)+len(c.UnknownExtKeyUsage) != 0 {
				t.Fatalf("usages %v %v", c.KeyUsage, c.ExtKeyUsage)
			}
			if !c.NotBefore.Equal(issued.Add(-time.Hour)) || c.NotAfter.Format("20060102150405Z") != NoWellDefinedExpiration {
				t.Fatalf("validity %v - %v", c.NotBefore, c.NotAfter)
			}
			want, _ := KeyID(key.Public())
			if !bytes.Equal(c.SubjectKeyId, want) {
				t.Fatalf("SKID %x, want %x", c.SubjectKeyId, want)
			}
		}},
		{name: "custom", p: custom, check: func(t *testing.T, c *x509.Certificate) {
			if c.Subject.CommonName != "Sensor" || c.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageKeyAgreement {
				t.Fatalf("cn %q ku %v", c.Subject.CommonName, c.KeyUsage)
			}
			if len(c.SubjectKeyId) != 0 {
				t.Fatal("SKID present though disabled")
			}
			if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth || len(c.UnknownExtKeyUsage) != 1 {
				t.Fatalf("EKU %v %v", c.ExtKeyUsage, c.UnknownExtKeyUsage)
			}
			if !c.NotBefore.Equal(issued) || !c.NotAfter.Equal(issued.Add(24*time.Hour)) {
				t.Fatalf("validity %v - %v", c.NotBefore, c.NotAfter)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tmpl, err := tc.p.Template(testDevice, key.Public(), serial, issued)
			if err != nil {
				t.Fatal(err)
			}
			c := selfSign(t, tmpl, key.Public())
			if c.SerialNumber.Cmp(serial) != 0 || c.IsCA || !c.BasicConstraintsValid {
				t.Fatalf("serial %v isCA %v", c.SerialNumber, c.IsCA)
			}
			var uris []string
			for _, u := range c.URIs {
				uris = append(uris, u.String())
			}
			if got := strings.Join(uris, " "); got != "urn:gsma:imei:49015420-323751-0 urn:gsma:imei:35780502-398494-0" {
				t.Fatalf("URIs %q", got)
			}
			for _, e := range c.Extensions {
				if e.Id.Equal(oidSubjectAltName) && e.Critical {
					t.Fatal("SAN is critical though the subject is not empty")
				}
			}
			hmn, err := ParseHardwareModuleNames(c)
			if err != nil || len(hmn) != 1 || hmn[0].HWType.String() != tc.p.HWType || string(hmn[0].HWSerialNum) != "SN-0001" {
				t.Fatalf("HardwareModuleName %+v, %v", hmn, err)
			}
			tc.check(t, c)
		})
	}
}

func TestTemplateRefuses(t *testing.T) {
	t.Parallel()
	key := ecKey(t, elliptic.P256())
	now := time.Now()
	bad := DefaultProfile()
	bad.HWType = "1"
	tests := []struct {
		name   string
		p      Profile
		d      Device
		serial *big.Int
		issued time.Time
		field  string
	}{
		{name: "invalid profile", p: bad, d: testDevice, serial: big.NewInt(1), issued: now, field: "profile.hw_type"},
		{name: "invalid device", p: DefaultProfile(), d: Device{}, serial: big.NewInt(1), issued: now, field: "device_serial"},
		{name: "no serial", p: DefaultProfile(), d: testDevice, issued: now, field: "serial"},
		{name: "no issue time", p: DefaultProfile(), d: testDevice, serial: big.NewInt(1), field: "not_before"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tmpl, err := tc.p.Template(tc.d, key.Public(), tc.serial, tc.issued)
			if tmpl != nil {
				t.Fatal("template returned with an error")
			}
			if e, ok := tacerr.As(err); !ok || e.Field != tc.field {
				t.Fatalf("err = %v, want field %s", err, tc.field)
			}
		})
	}
}

func FuzzDecodeProfile(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("common_name: Sensor\nhw_type: 1.3.6.1.4.1.99999.1\nnot_after: 87600h\n"))
	f.Add([]byte("ext_key_usage: [client_auth]\nbackdate: 1h\n"))
	f.Add([]byte("hw_type: 2.999999999999999999999\n"))
	f.Add([]byte("- a\n- b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := DecodeProfile(data)
		if err != nil {
			if c := tacerr.CodeOf(err); c != tacerr.InvalidConfig {
				t.Fatalf("code %s: %v", c, err)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("decoded profile does not validate: %v", err)
		}
		if _, err := p.Template(testDevice, testKey.Public(), big.NewInt(1), time.Unix(1e9, 0)); err != nil {
			t.Fatalf("valid profile cannot build a template: %v", err)
		}
	})
}

var testKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

// FuzzParseHardwareModuleNames feeds arbitrary subjectAltName values: no
// panic, and a SAN made by the profile always round-trips.
func FuzzParseHardwareModuleNames(f *testing.F) {
	san, err := DefaultProfile().subjectAltName(testDevice)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(san)
	f.Add(san[:len(san)-3])
	f.Add([]byte{0x30, 0x00})
	f.Add([]byte{0x30, 0x03, 0xa0, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &x509.Certificate{Extensions: []pkix.Extension{{Id: oidSubjectAltName, Value: data}}}
		hmn, err := ParseHardwareModuleNames(c)
		if err != nil && hmn != nil {
			t.Fatal("names returned with an error")
		}
		if bytes.Equal(data, san) && (err != nil || len(hmn) != 1 || string(hmn[0].HWSerialNum) != testDevice.Serial) {
			t.Fatalf("profile SAN does not round-trip: %v %v", hmn, err)
		}
	})
}

// TestEKUWords: every named usage is valid and has the OID crypto/x509
// writes for it; dotted OIDs are valid; other words are not.
func TestEKUWords(t *testing.T) {
	for _, n := range namedEKUs {
		if !n.name.Valid() {
			t.Errorf("%s is not valid", n.name)
		}
		if oid, ok := EKUOID(n.usage); !ok || !oid.Equal(n.oid) {
			t.Errorf("EKUOID(%s) = %v, %v", n.name, oid, ok)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), ExtKeyUsage: []x509.ExtKeyUsage{n.usage}}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range c.Extensions {
			if e.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 37}) {
				var oids []asn1.ObjectIdentifier
				if _, err := asn1.Unmarshal(e.Value, &oids); err != nil || len(oids) != 1 || !oids[0].Equal(n.oid) {
					t.Errorf("%s: crypto/x509 writes %v (%v), the table says %v", n.name, oids, err, n.oid)
				}
			}
		}
	}
	if !EKU("1.3.6.1.4.1.99999.2").Valid() {
		t.Error("dotted OID not valid")
	}
	for _, bad := range []EKU{"", "clientAuth", "client-auth", "1.x"} {
		if bad.Valid() {
			t.Errorf("%q is valid", bad)
		}
	}
	if _, ok := EKUOID(x509.ExtKeyUsageOCSPSigning); ok {
		t.Error("OCSP signing has an OID here: profiles cannot name it")
	}
}

// KeyID's ECDSA path (the key's point, no SPKI encoded) gives the SHA-1 of
// the subjectPublicKey BIT STRING that the SPKI holds, on both curves; other
// keys go through the SPKI.
func TestKeyIDIsTheSPKIBitString(t *testing.T) {
	fromSPKI := func(pub any) []byte {
		t.Helper()
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		var spki struct {
			Algorithm pkix.AlgorithmIdentifier
			PublicKey asn1.BitString
		}
		if _, err := asn1.Unmarshal(der, &spki); err != nil {
			t.Fatal(err)
		}
		sum := sha1.Sum(spki.PublicKey.Bytes)
		return sum[:]
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys := []any{edKey.Public()}
	for _, c := range []elliptic.Curve{elliptic.P256(), elliptic.P384()} {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.Public())
	}
	for _, pub := range keys {
		got, err := KeyID(pub)
		if err != nil || !bytes.Equal(got, fromSPKI(pub)) {
			t.Fatalf("KeyID(%T) = %x, %v; want %x", pub, got, err, fromSPKI(pub))
		}
	}
}
