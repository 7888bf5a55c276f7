package ca

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"

	"github.com/tacline/tacline/tacerr"
)

// ServerCert makes a TLS server certificate (serverAuth EKU) for tacline's
// API, signed by caCert's key, for the given DNS names and IP addresses. In
// development the station CA signs it, so stations trust the server through
// the same chain they present. It generates a P-256 key when pub is nil and
// returns it.
func ServerCert(caCert *x509.Certificate, caSigner crypto.Signer, pub crypto.PublicKey, dns []string, ips []net.IP, v Validity) (*x509.Certificate, crypto.Signer, error) {
	if err := v.check(); err != nil {
		return nil, nil, err
	}
	if err := checkParent(caCert, caSigner); err != nil {
		return nil, nil, err
	}
	if len(dns) == 0 && len(ips) == 0 {
		return nil, nil, tacerr.Field(tacerr.InvalidInput, "names", "a server certificate needs at least one DNS name or IP address")
	}
	key, pub, serial, skid, err := leaf(pub, "server")
	if err != nil {
		return nil, nil, err
	}
	cn := "tacline server"
	if len(dns) > 0 {
		cn = dns[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             v.NotBefore,
		NotAfter:              v.NotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		SubjectKeyId:          skid,
		DNSNames:              dns,
		IPAddresses:           ips,
	}
	cert, err := sign(tmpl, caCert, pub, caSigner)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}
