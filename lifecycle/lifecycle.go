// Package lifecycle holds the ledger's words, each defined once: the states
// an IMEI (and a device) passes through, the reasons an IMEI is voided and
// the reasons a certificate is revoked, with the RFC 5280 CRLReason code
// each revoke reason is published under in CRLs and OCSP responses.
//
// Every word is a string type with Valid; the store, the use cases, the
// revocation publisher, the API and the CLI use these types, so a word
// cannot be accepted in one place and unknown in another. Parse functions
// turn outside input into words with an error that names the field.
// The package does no I/O and imports nothing of this module but tacerr.
package lifecycle

import (
	"strings"

	"github.com/tacline/tacline/tacerr"
)

// State is the state of an IMEI in the ledger (and of a device: BOUND,
// VOIDED, REVOKED). The changes allowed are RESERVED -> BOUND -> REVOKED,
// RESERVED -> VOIDED and BOUND -> VOIDED.
type State string

// The states.
const (
	StateReserved State = "RESERVED"
	StateBound    State = "BOUND"
	StateVoided   State = "VOIDED"
	StateRevoked  State = "REVOKED"
)

// States lists every state.
var States = []State{StateReserved, StateBound, StateVoided, StateRevoked}

// Valid reports whether s is one of States.
func (s State) Valid() bool { return in(States, s) }

// VoidReason says why IMEIs were voided (never reused).
type VoidReason string

// The void reasons. VoidAbandoned is given only by recovery, to IMEIs of an
// issuance intent that never completed, and VoidLeaseReturned only by
// headquarters; a person chooses one of the others.
const (
	VoidScrapped  VoidReason = "scrapped"
	VoidTest      VoidReason = "test"
	VoidRework    VoidReason = "rework"
	VoidOther     VoidReason = "other"
	VoidAbandoned VoidReason = "abandoned"
	// VoidLeaseReturned is given by headquarters to the SNRs of a returned
	// lease that its site never reported (docs/sites.md).
	VoidLeaseReturned VoidReason = "lease_returned"
)

// VoidReasons lists every void reason; ChosenVoidReasons those a caller may
// give.
var (
	VoidReasons       = []VoidReason{VoidScrapped, VoidTest, VoidRework, VoidOther, VoidAbandoned, VoidLeaseReturned}
	ChosenVoidReasons = []VoidReason{VoidScrapped, VoidTest, VoidRework, VoidOther}
)

// Valid reports whether r is one of VoidReasons.
func (r VoidReason) Valid() bool { return in(VoidReasons, r) }

// Chosen reports whether r is a reason a caller may give (not abandoned).
func (r VoidReason) Chosen() bool { return in(ChosenVoidReasons, r) }

// ParseVoidReason returns s as a void reason a caller may give, or an
// invalid_input error naming field.
func ParseVoidReason(field, s string) (VoidReason, error) {
	if r := VoidReason(s); r.Chosen() {
		return r, nil
	}
	return "", tacerr.Field(tacerr.InvalidInput, field, "%q is not a void reason: use %s", s, list(ChosenVoidReasons))
}

// RevokeReason says why a certificate (a device's or a CA's) was revoked.
type RevokeReason string

// The revoke reasons. A device is revoked as stolen, cloned, compromised,
// superseded or other (RevokeDeviceReasons); a reissue revokes the old
// certificate as superseded; voiding a BOUND device revokes its
// certificate as cessationOfOperation; a CA is revoked as compromised,
// superseded, cessationOfOperation or other (RevokeCAReasons).
const (
	RevokeStolen               RevokeReason = "stolen"
	RevokeCloned               RevokeReason = "cloned"
	RevokeCompromised          RevokeReason = "compromised"
	RevokeSuperseded           RevokeReason = "superseded"
	RevokeCessationOfOperation RevokeReason = "cessationOfOperation"
	RevokeOther                RevokeReason = "other"
)

// RevokeReasons lists every revoke reason; RevokeDeviceReasons those a
// caller may give for a device, RevokeCAReasons those for a CA.
var (
	RevokeReasons       = []RevokeReason{RevokeStolen, RevokeCloned, RevokeCompromised, RevokeSuperseded, RevokeCessationOfOperation, RevokeOther}
	RevokeDeviceReasons = []RevokeReason{RevokeStolen, RevokeCloned, RevokeCompromised, RevokeSuperseded, RevokeOther}
	RevokeCAReasons     = []RevokeReason{RevokeCompromised, RevokeSuperseded, RevokeCessationOfOperation, RevokeOther}
)

// Valid reports whether r is one of RevokeReasons.
func (r RevokeReason) Valid() bool { return in(RevokeReasons, r) }

// RFC 5280 CRLReason codes used by the revoke reasons (section 5.3.1).
const (
	CRLUnspecified          = 0
	CRLKeyCompromise        = 1
	CRLCACompromise         = 2
	CRLSuperseded           = 4
	CRLCessationOfOperation = 5
)

// reasonCodes gives every revoke reason its CRLReason; a test holds it to
// RevokeReasons.
var reasonCodes = map[RevokeReason]int{
	RevokeStolen:               CRLKeyCompromise, // the device key is in other hands
	RevokeCloned:               CRLKeyCompromise,
	RevokeCompromised:          CRLKeyCompromise,
	RevokeSuperseded:           CRLSuperseded,
	RevokeCessationOfOperation: CRLCessationOfOperation,
	RevokeOther:                CRLUnspecified,
}

// Code returns the RFC 5280 CRLReason r is published under; for a CA
// certificate a key compromise is cACompromise. CRLUnspecified (0) means no
// reasonCode extension (RFC 5280 says to omit it); a word that is not
// Valid, which the ledger never holds, is unspecified too.
func (r RevokeReason) Code(isCA bool) int {
	c := reasonCodes[r]
	if isCA && c == CRLKeyCompromise {
		return CRLCACompromise
	}
	return c
}

// ParseRevokeReason returns s as one of allowed (RevokeDeviceReasons or
// RevokeCAReasons), or an invalid_input error naming field.
func ParseRevokeReason(field, s string, allowed []RevokeReason) (RevokeReason, error) {
	if r := RevokeReason(s); in(allowed, r) {
		return r, nil
	}
	return "", tacerr.Field(tacerr.InvalidInput, field, "%q is not a revocation reason: use %s", s, list(allowed))
}

func in[T comparable](set []T, v T) bool {
	for _, x := range set {
		if x == v {
			return true
		}
	}
	return false
}

// list writes "a, b, c or d".
func list[T ~string](set []T) string {
	var b strings.Builder
	for i, x := range set {
		switch {
		case i == 0:
		case i == len(set)-1:
			b.WriteString(" or ")
		default:
			b.WriteString(", ")
		}
		b.WriteString(string(x))
	}
	return b.String()
}
