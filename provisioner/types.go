package provisioner

import (
	"crypto/x509"
	"time"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/lifecycle"
)

// Role is what a client may do. Roles come from the client certificate (see
// package api); the provisioner receives them in an Actor.
type Role string

// The roles.
const (
	RoleStation   Role = "station"   // a factory station: provision, pre-allocate, bind, void, reissue (its factory's objects)
	RoleOperator  Role = "operator"  // factory operations: void, reissue, revoke, read
	RoleAuditor   Role = "auditor"   // read the ledger and audit log
	RoleRegulator Role = "regulator" // read, verify, reconcile
	RoleAdmin     Role = "admin"     // everything
	// RoleSite is a factory site syncing with headquarters
	// (docs/sites.md): it comes only from a urn:tacline:site: URI SAN, never
	// from a role URN or an identity map rule.
	RoleSite Role = "site"
)

// Roles lists the roles a role URN or an identity-map rule can grant, in
// the order of the route matrix (docs/api.md); Valid accepts exactly these.
var Roles = []Role{RoleStation, RoleOperator, RoleAuditor, RoleRegulator, RoleAdmin}

// AllRoles is Roles and RoleSite, which only a site's URI SAN grants: the
// columns of the route matrix, in its order.
var AllRoles = append(append([]Role(nil), Roles...), RoleSite)

// Valid reports whether r is one of Roles.
func (r Role) Valid() bool {
	for _, x := range Roles {
		if x == r {
			return true
		}
	}
	return false
}

// Scope is which existing objects (devices, IMEIs, reservations) an actor
// may act on in one call. The API's route table decides it per route and
// role (docs/api.md); the use cases apply it to the object they load,
// before anything is written.
type Scope int

// The scopes, narrowest first.
const (
	// ScopeNone: no existing object (the zero value refuses).
	ScopeNone Scope = iota
	// ScopeFactory: objects drawn from the station's pools or from any
	// pool of the station's factory (policy.CheckOwner).
	ScopeFactory
	// ScopeAll: every object (operators, auditors, regulators, admins).
	ScopeAll
)

// Actor is the authenticated caller of a use case.
type Actor struct {
	// ID names the caller in the ledger and audit log: the station id for
	// stations ("F1-L3-S07"), otherwise the certificate's identity.
	ID      string
	Roles   []Role
	Station string // non-empty when the caller is a station
	Scope   Scope  // which existing objects it may act on in this call
}

// Has reports whether the actor holds role r (admin holds every role).
func (a Actor) Has(r Role) bool {
	for _, x := range a.Roles {
		if x == r || x == RoleAdmin {
			return true
		}
	}
	return false
}

// HasAny reports whether a holds one of roles, exactly: admin is not
// implied (the API's route table and the console list admin where it may
// act).
func (a Actor) HasAny(roles []Role) bool {
	for _, want := range roles {
		for _, have := range a.Roles {
			if want == have {
				return true
			}
		}
	}
	return false
}

// Station is an enrolled factory station.
type Station struct {
	ID          string
	Factory     string
	Line        string
	Pools       []string // pools it may draw from
	CertSerial  string   // hex serial of its current client certificate
	EnrolledAt  time.Time
	Disabled    bool
	DisabledAt  time.Time
	Description string
}

// ProvisionInput is one device to provision: IMEIs and certificate at once.
type ProvisionInput struct {
	Actor        Actor
	RequestID    string
	DeviceSerial string
	Product      string // the station's pool for this product is used...
	Pool         string // ...unless a pool is named
	IMEICount    int    // 0: the TAC's IMEIs per device
	CSR          []byte // PEM or DER
}

// AllocateInput pre-allocates IMEIs for devices not yet programmed.
type AllocateInput struct {
	Actor          Actor
	RequestID      string
	Pool           string
	Count          int // devices
	IMEIsPerDevice int // 0: the TAC's IMEIs per device
}

// Allocation is a committed pre-allocation.
type Allocation struct {
	RequestID string
	Pool      string
	Devices   [][]imei.IMEI
	CreatedAt time.Time
	Replayed  bool
}

// BindInput binds one pre-allocated device group to a device.
type BindInput struct {
	Actor        Actor
	RequestID    string
	IMEIs        []imei.IMEI
	DeviceSerial string
	CSR          []byte
}

// VoidInput voids one IMEI (and the rest of its device group with it).
type VoidInput struct {
	Actor  Actor
	IMEI   imei.IMEI
	Reason lifecycle.VoidReason // one a caller may give (lifecycle.ChosenVoidReasons)
	Note   string
}

// ReissueInput re-certifies a reworked device with a new key.
type ReissueInput struct {
	Actor        Actor
	RequestID    string
	DeviceSerial string
	CSR          []byte
}

// RevokeInput revokes a device.
type RevokeInput struct {
	Actor        Actor
	DeviceSerial string
	Reason       lifecycle.RevokeReason // one of lifecycle.RevokeDeviceReasons
}

// Issued is a device's identity: its IMEIs and its certificate.
type Issued struct {
	DeviceSerial string
	IMEIs        []imei.IMEI
	Certificate  *x509.Certificate
	CertDER      []byte
	ChainPEM     string // issuing CA first, up to the root (shared per issuer)
	CertSerial   string // lower-case hex
	IssuedAt     time.Time
	Replayed     bool // the request id had been answered before: same result again
}

// Device is a device's ledger record.
type Device struct {
	Serial     string
	State      lifecycle.State // BOUND | REVOKED | VOIDED
	Station    string
	Pool       string
	IMEIs      []imei.IMEI
	CertSerial string
	CertDER    []byte
	BoundAt    time.Time
	RevokedAt  time.Time
	Reason     string
}
