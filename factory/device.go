package factory

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/tacline/tacline/internal/der"
	"github.com/tacline/tacline/internal/pemblock"
	"github.com/tacline/tacline/policy"
	"github.com/tacline/tacline/tacerr"
)

// Device is a simulated device: a serial number and an ECDSA key made on
// the device, as its secure element would. On a real device the private key
// never leaves the secure element; the simulator can write it out (KeyPEM)
// so that authenticity checks can be demonstrated.
type Device struct {
	serial string
	key    *ecdsa.PrivateKey
}

// NewDevice makes a device with a fresh P-256 key.
func NewDevice(serial string) (*Device, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Internal, err, "generate the key of device %s", serial)
	}
	return NewDeviceWithKey(serial, key)
}

// NewDeviceWithKey makes a device around an existing ECDSA P-256 or P-384
// key.
func NewDeviceWithKey(serial string, key *ecdsa.PrivateKey) (*Device, error) {
	if err := policy.CheckDeviceSerial(serial); err != nil {
		return nil, err
	}
	if key == nil {
		return nil, tacerr.Field(tacerr.InvalidInput, "key", "the device key is required")
	}
	if _, err := challengeHash(&key.PublicKey); err != nil {
		return nil, err
	}
	return &Device{serial: serial, key: key}, nil
}

// Serial returns the device serial.
func (d *Device) Serial() string { return d.serial }

// Public returns the device's public key.
func (d *Device) Public() crypto.PublicKey { return &d.key.PublicKey }

// CSR returns a PEM PKCS#10 request signed by the device key (proof of
// possession), with the device serial as subject CN and serialNumber. The
// server's profile decides what is certified; the subject is informative.
// Like a secure element, it signs once: the request is encoded here rather
// than by x509.CreateCertificateRequest, which verifies every signature it
// makes (an extra ECDSA verification per simulated device, on the cores the
// server under test uses); TestCSRMatchesCreateCertificateRequest checks the
// bytes are crypto/x509's.
func (d *Device) CSR() ([]byte, error) {
	spki, err := x509.MarshalPKIXPublicKey(&d.key.PublicKey)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Internal, err, "make the CSR of device %s", d.serial)
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, 256))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // CertificationRequestInfo
		b.AddASN1Int64(0)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			der.AddRDN(b, der.OIDCommonName, d.serial)
			der.AddRDN(b, der.OIDSerialNumber, d.serial)
		})
		b.AddBytes(spki)
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(*cryptobyte.Builder) {}) // no attributes
	})
	info, err := b.Bytes()
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Internal, err, "make the CSR of device %s", d.serial)
	}
	h, _ := challengeHash(&d.key.PublicKey) // checked when the device was made
	alg := oidECDSAWithSHA256
	if h == crypto.SHA384 {
		alg = oidECDSAWithSHA384
	}
	hh := h.New()
	hh.Write(info)
	sig, err := ecdsa.SignASN1(rand.Reader, d.key, hh.Sum(nil))
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Internal, err, "sign the CSR of device %s", d.serial)
	}
	csr, err := der.Signed(info, alg, sig)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Internal, err, "make the CSR of device %s", d.serial)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}), nil
}

var (
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
)

// KeyPEM returns the device's private key as PKCS#8 PEM ("PRIVATE KEY").
func (d *Device) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(d.key)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Internal, err, "encode the key of device %s", d.serial)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// SignChallenge signs nonce as the device answers an authenticity
// challenge: ECDSA over SHA-256 of the nonce bytes (SHA-384 for a P-384
// key), ASN.1 DER signature.
func (d *Device) SignChallenge(nonce []byte) ([]byte, error) {
	return SignChallenge(d.key, nonce)
}

// SignChallenge signs nonce with key as a device does (see
// Device.SignChallenge).
func SignChallenge(key *ecdsa.PrivateKey, nonce []byte) ([]byte, error) {
	if len(nonce) == 0 {
		return nil, tacerr.Field(tacerr.InvalidInput, "nonce", "is empty; give the challenge's nonce bytes")
	}
	h, err := challengeHash(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	var digest []byte
	if h == crypto.SHA384 {
		s := sha512.Sum384(nonce)
		digest = s[:]
	} else {
		s := sha256.Sum256(nonce)
		digest = s[:]
	}
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.Internal, err, "sign the challenge")
	}
	return sig, nil
}

// challengeHash is the hash a device uses with its key's curve.
func challengeHash(pub *ecdsa.PublicKey) (crypto.Hash, error) {
	switch pub.Curve {
	case elliptic.P256():
		return crypto.SHA256, nil
	case elliptic.P384():
		return crypto.SHA384, nil
	}
	return 0, tacerr.Field(tacerr.InvalidInput, "key", "the device key is on curve %s; a device key is ECDSA P-256 or P-384", pub.Curve.Params().Name)
}

// ParseDeviceKey decodes a device key written by KeyPEM: one PKCS#8 PEM
// block ("PRIVATE KEY") holding an ECDSA P-256 or P-384 key. An "EC PRIVATE
// KEY" (SEC 1) block is accepted too. Errors have field "key" and never
// quote the key material.
func ParseDeviceKey(data []byte) (*ecdsa.PrivateKey, error) {
	block, err := pemblock.One(data, tacerr.InvalidInput, "key", "PRIVATE KEY", "EC PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	var parsed any
	if block.Type == "PRIVATE KEY" {
		parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	} else {
		parsed, err = x509.ParseECPrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, tacerr.Field(tacerr.InvalidInput, "key", "the %s block does not hold a valid key", block.Type)
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok {
		return nil, tacerr.Field(tacerr.InvalidInput, "key", "holds a %T; a device key is ECDSA P-256 or P-384", parsed)
	}
	if _, err := challengeHash(&key.PublicKey); err != nil {
		return nil, err
	}
	return key, nil
}
