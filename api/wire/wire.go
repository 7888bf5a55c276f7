// Package wire holds the JSON request and response types of tacline's HTTP
// API (/v1), shared by the server (package api) and the station client
// (package factory). It has no behaviour beyond encoding: no server code,
// no validation beyond what the types say. api/openapi.yaml documents the
// same types; the two must agree.
package wire

import "time"

// Paths of the API.
const (
	PathProvision   = "/v1/provision"
	PathAllocations = "/v1/allocations"
	PathBind        = "/v1/bind"
	PathVoidIMEI    = "/v1/imeis/{imei}/void"
	PathIMEI        = "/v1/imeis/{imei}"
	PathDevice      = "/v1/devices/{serial}"
	PathReissue     = "/v1/devices/{serial}/reissue"
	PathRevoke      = "/v1/devices/{serial}/revoke"
	PathPools       = "/v1/pools"
	PathOpenAPI     = "/v1/openapi.yaml"
	PathHealthz     = "/healthz"
	PathReadyz      = "/readyz"
	PathMetrics     = "/metrics"
)

// MaxBodyBytes bounds every request body.
const MaxBodyBytes = 64 << 10

// ProvisionRequest asks for a device's IMEIs and certificate in one call.
type ProvisionRequest struct {
	RequestID    string `json:"request_id"`           // idempotency key chosen by the station, unique forever
	DeviceSerial string `json:"device_serial"`        // the device's serial number
	Product      string `json:"product,omitempty"`    // the product; the server picks the station's pool for it
	Pool         string `json:"pool,omitempty"`       // or an explicit pool
	IMEICount    int    `json:"imei_count,omitempty"` // default: the TAC's IMEIs per device
	CSR          string `json:"csr"`                  // PEM (or base64 DER) PKCS#10 request made by the device
}

// ProvisionResponse is the device's identity.
type ProvisionResponse struct {
	DeviceSerial      string    `json:"device_serial"`
	IMEIs             []string  `json:"imeis"`       // 15 digits each, with check digit
	Certificate       string    `json:"certificate"` // PEM
	Chain             string    `json:"chain"`       // PEM: issuing CA first, up to the root
	CertificateSerial string    `json:"certificate_serial"`
	IssuedAt          time.Time `json:"issued_at"`
}

// MaxAllocationDevices is the most devices one AllocationRequest may ask
// for (the ledger's store.MaxDevicesPerReservation); a client splits larger
// pre-allocations into several requests.
const MaxAllocationDevices = 1000

// AllocationRequest reserves IMEIs for devices not yet programmed (label
// printing). The IMEIs belong to the calling station until bound or voided.
type AllocationRequest struct {
	RequestID      string `json:"request_id"`
	Pool           string `json:"pool"`
	Count          int    `json:"count"`                      // devices
	IMEIsPerDevice int    `json:"imeis_per_device,omitempty"` // default: the TAC's IMEIs per device
}

// AllocationResponse lists the reserved IMEIs, one group per device.
type AllocationResponse struct {
	RequestID string     `json:"request_id"`
	Pool      string     `json:"pool"`
	Devices   [][]string `json:"devices"`
	CreatedAt time.Time  `json:"created_at"`
}

// BindRequest binds pre-allocated IMEIs (one device's group) to a device and
// issues its certificate. The response is a ProvisionResponse.
type BindRequest struct {
	RequestID    string   `json:"request_id"`
	IMEIs        []string `json:"imeis"`
	DeviceSerial string   `json:"device_serial"`
	CSR          string   `json:"csr"`
}

// VoidRequest voids an IMEI forever.
type VoidRequest struct {
	Reason string `json:"reason"` // scrapped | test | rework | other
	Note   string `json:"note,omitempty"`
}

// ReissueRequest issues a new certificate for a reworked device, keeping its
// IMEIs and revoking the old certificate (reason superseded). The response is
// a ProvisionResponse.
type ReissueRequest struct {
	RequestID string `json:"request_id"`
	CSR       string `json:"csr"`
}

// RevokeRequest revokes a device's certificate and IMEIs.
type RevokeRequest struct {
	Reason string `json:"reason"` // stolen | cloned | compromised | superseded | other
}

// IMEIStatus is one IMEI's ledger record.
type IMEIStatus struct {
	IMEI              string     `json:"imei"`
	State             string     `json:"state"` // RESERVED | BOUND | VOIDED | REVOKED
	Pool              string     `json:"pool"`
	TAC               string     `json:"tac"`
	DeviceSerial      string     `json:"device_serial,omitempty"`
	CertificateSerial string     `json:"certificate_serial,omitempty"`
	Station           string     `json:"station"`
	Reason            string     `json:"reason,omitempty"`
	ReservedAt        time.Time  `json:"reserved_at"`
	BoundAt           *time.Time `json:"bound_at,omitempty"`
	VoidedAt          *time.Time `json:"voided_at,omitempty"`
	RevokedAt         *time.Time `json:"revoked_at,omitempty"`
}

// DeviceStatus is a device's record.
type DeviceStatus struct {
	DeviceSerial      string       `json:"device_serial"`
	State             string       `json:"state"` // BOUND | REVOKED | VOIDED
	IMEIs             []IMEIStatus `json:"imeis"`
	Certificate       string       `json:"certificate,omitempty"` // PEM of the current certificate
	CertificateSerial string       `json:"certificate_serial,omitempty"`
	Station           string       `json:"station"`
	Product           string       `json:"product,omitempty"`
	Pool              string       `json:"pool,omitempty"`
	BoundAt           *time.Time   `json:"bound_at,omitempty"`
	RevokedAt         *time.Time   `json:"revoked_at,omitempty"`
	Reason            string       `json:"reason,omitempty"` // why the device was revoked or voided
}

// PoolStatus is one pool's utilisation.
type PoolStatus struct {
	Name          string `json:"name"`
	TAC           string `json:"tac"`
	SNRStart      uint32 `json:"snr_start"`
	SNREnd        uint32 `json:"snr_end"`
	HighWaterMark uint32 `json:"high_water_mark"`
	Factory       string `json:"factory"`
	Line          string `json:"line"`
	Product       string `json:"product"`
	Market        string `json:"market"`
	Reserved      int64  `json:"reserved"`
	Bound         int64  `json:"bound"`
	Voided        int64  `json:"voided"`
	Revoked       int64  `json:"revoked"`
	Free          int64  `json:"free"`
}

// PoolList is the body of GET /v1/pools.
type PoolList struct {
	Pools []PoolStatus `json:"pools"`
}

// Problem is an RFC 9457 problem document (media type
// application/problem+json) with tacline's extensions.
type Problem struct {
	Type      string `json:"type"` // "https://tacline.dev/problems/<code>" style URI reference
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail,omitempty"`
	Instance  string `json:"instance,omitempty"`
	Code      string `json:"code"`            // stable machine-readable code (tacerr)
	Field     string `json:"field,omitempty"` // the request field at fault
	Retryable bool   `json:"retryable"`
	// IMEIs carries a device's existing IMEIs with device_already_provisioned.
	IMEIs []string `json:"imeis,omitempty"`
}

// ProblemContentType is the media type of Problem bodies.
const ProblemContentType = "application/problem+json"
