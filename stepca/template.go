package stepca

import (
	"crypto"
	"encoding/json"
	"math"
	"time"

	"go.step.sm/crypto/jose"

	"github.com/tacline/tacline/tacerr"
)

// ClaimName is the token claim that carries the certificate tacline fixed.
// The provisioner template reads it as .Token.tacline.
const ClaimName = "tacline"

// DeviceTemplate is the X.509 template of the provisioner tacline signs
// through. It copies, field by field, what tacline's profile built and
// zlint checked: the subject (DER), the serial number, the validity and
// every extension with its criticality and value (subjectAltName with the
// IMEI URNs and the HardwareModuleName, keyUsage, basicConstraints,
// subjectKeyIdentifier, authorityKeyIdentifier, extendedKeyUsage). The
// certificate step-ca signs therefore has exactly the linted TBS, which
// tacline checks byte for byte before it binds.
const DeviceTemplate = `{
  "rawSubject": {{ toJson .Token.tacline.subject }},
  "serialNumber": {{ toJson .Token.tacline.serial }},
  "notBefore": {{ toJson .Token.tacline.not_before }},
  "notAfter": {{ toJson .Token.tacline.not_after }},
  "extensions": {{ toJson .Token.tacline.extensions }}
}`

// MaxDuration is the provisioner's maxTLSCertDuration that admits device
// certificates valid until 99991231235959Z (Go measures durations in
// int64 nanoseconds: about 292 years, the most step-ca can be told).
// step-ca's authority backdate must be 0s with it, or the limit overflows.
var MaxDuration = time.Duration(math.MaxInt64).String()

// Provisioner is one JWK provisioner of step-ca's ca.json
// (authority.provisioners[]).
type Provisioner struct {
	Type    string           `json:"type"`
	Name    string           `json:"name"`
	Key     *jose.JSONWebKey `json:"key"`
	Claims  map[string]any   `json:"claims,omitempty"`
	Options map[string]any   `json:"options,omitempty"`
}

// DeviceProvisioner returns the JWK provisioner, named name, that trusts
// tacline's RA key pub and signs device certificates with DeviceTemplate
// (template, when not empty, replaces it). Renewal is disabled (device
// certificates are re-issued through tacline, never renewed at step-ca)
// and the smallstep provisioner extension is left out (it is not in
// tacline's profile).
func DeviceProvisioner(name string, pub crypto.PublicKey, template string) (Provisioner, error) {
	jwk, err := publicJWK(pub)
	if err != nil {
		return Provisioner{}, err
	}
	if template == "" {
		template = DeviceTemplate
	}
	return Provisioner{Type: "JWK", Name: name, Key: jwk,
		Claims: map[string]any{
			"minTLSCertDuration":         "1m",
			"maxTLSCertDuration":         MaxDuration,
			"defaultTLSCertDuration":     "24h",
			"disableRenewal":             true,
			"disableSmallstepExtensions": true,
		},
		Options: map[string]any{"x509": map[string]any{"template": template}},
	}, nil
}

// publicJWK is pub as a JWK with step-ca's key id (its SHA-256 thumbprint).
func publicJWK(pub crypto.PublicKey) (*jose.JSONWebKey, error) {
	jwk := &jose.JSONWebKey{Key: pub, Use: "sig", Algorithm: jose.ES256}
	if !jwk.Valid() {
		return nil, tacerr.Field(tacerr.InvalidConfig, "stepca.key_label", "the RA key (%T) cannot be a JWK", pub)
	}
	kid, err := jose.Thumbprint(jwk)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.InvalidConfig, err, "thumbprint of the RA key")
	}
	jwk.KeyID = kid
	return jwk, nil
}

// JSON returns the provisioner as indented JSON for ca.json.
func (p Provisioner) JSON() ([]byte, error) { return json.MarshalIndent(p, "", "  ") }
