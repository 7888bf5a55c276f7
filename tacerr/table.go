package tacerr

import (
	"net/http"
	"time"
)

// Spec is what a code means to a caller: one row of the table.
type Spec struct {
	Code   Code
	Status int    // the HTTP status of a response with this code
	Title  string // the problem document's title
	// Retryable says the same request may succeed later without a person
	// acting (a dependency is down, a limit refills). A condition that
	// needs a person (a refused PIN, a missing key) is not retryable.
	Retryable bool
	// RetryAfter is the Retry-After hint of a retryable code (whole
	// seconds); zero exactly when the code is not retryable.
	RetryAfter time.Duration
	// Detail says the error's message may be sent to the client; otherwise
	// a generic detail is sent and the message stays in the server's log.
	Detail bool
	// Meaning is one line for docs/errors.md: what happened and what to do.
	Meaning string
}

// specs is the table, in the order docs/errors.md lists it.
var specs = []Spec{
	{InvalidInput, http.StatusBadRequest, "Invalid input", false, 0, true, "A field is missing, malformed or out of range; `field` names it. Fix the request."},
	{CSRInvalid, http.StatusBadRequest, "Invalid certificate signing request", false, 0, true, "The CSR does not parse, its signature does not verify, or its key type is not allowed."},
	{InvalidIMEI, http.StatusBadRequest, "Invalid IMEI", false, 0, true, "An IMEI does not parse (length, digits, check digit)."},
	{RequestTooLarge, http.StatusRequestEntityTooLarge, "Request body too large", false, 0, true, "The request body exceeds the API's limit."},
	{UnsupportedMediaType, http.StatusUnsupportedMediaType, "Unsupported media type", false, 0, true, "The request body is not `application/json`."},

	{Unauthorized, http.StatusUnauthorized, "Unauthorized", false, 0, true, "No client certificate, a station that is not enrolled, or a station certificate that was replaced."},
	{Forbidden, http.StatusForbidden, "Forbidden", false, 0, true, "The caller is known but its role may not do this, or the station is disabled."},
	{StationNotAuthorized, http.StatusForbidden, "Station not authorized", false, 0, true, "The station may not draw from this pool or product."},
	{NotOwner, http.StatusForbidden, "Object of another factory", false, 0, true, "The caller's role may use this route, but the device, IMEI or reservation belongs to another factory; nothing was written."},

	{NotFound, http.StatusNotFound, "Not found", false, 0, true, "The named object does not exist."},
	{PoolNotFound, http.StatusNotFound, "Pool not found", false, 0, true, "The named pool does not exist."},
	{ReservationNotFound, http.StatusNotFound, "Reservation not found", false, 0, true, "The named reservation does not exist."},

	{Conflict, http.StatusConflict, "Conflict", false, 0, true, "The change collides with existing state."},
	{RequestConflict, http.StatusConflict, "Request id reused with a different request", false, 0, true, "The request id was used before with a different body; use a new request id."},
	{DeviceAlreadyProvisioned, http.StatusConflict, "Device already provisioned", false, 0, true, "The device serial already has IMEIs; `imeis` lists them."},
	{KeyReused, http.StatusConflict, "Device key already bound to another device", false, 0, true, "The CSR's public key is bound to another device, or claimed by another request in flight (a cloning signal); nothing was reserved."},
	{InvalidState, http.StatusConflict, "Invalid state for this operation", false, 0, true, "The IMEI, device, reservation, lease or issuer is not in a state that allows this."},
	{PoolOverlap, http.StatusConflict, "Pool overlaps another pool", false, 0, true, "The new pool's SNR range overlaps a pool of the same TAC."},
	{PoolExhausted, http.StatusConflict, "Pool exhausted", false, 0, true, "The pool has too few SNRs left for this request; an operator creates a new pool."},
	{LeaseViolation, http.StatusConflict, "Site events refused", false, 0, true, "Headquarters refused a site's sync batch: an IMEI outside the site's leases (a cloning signal) or a checkpoint not consistent with the last one verified; nothing of it was applied (docs/sites.md)."},

	{TACNotApproved, http.StatusUnprocessableEntity, "TAC not approved for this market", false, 0, true, "The TAC has no market approval valid today for the pool's market; judged again when a pre-allocated group is bound (field `imeis`), nothing recorded or signed."},
	{TACUnknown, http.StatusUnprocessableEntity, "TAC not in the catalogue", false, 0, true, "The TAC is not in the catalogue."},

	{RateLimited, http.StatusTooManyRequests, "Too many requests", true, time.Second, true, "Too many requests from one caller (its identity, else its address prefix); wait for `Retry-After` (the time until the quota refills)."},

	{Unavailable, http.StatusServiceUnavailable, "Service unavailable", true, time.Second, false, "A dependency (the ledger database, the register) is unreachable or busy; retry the same request later."},
	{HSMUnavailable, http.StatusServiceUnavailable, "HSM unavailable", true, time.Second, false, "The HSM session was lost or no session is free; retry the same request later."},
	{HSMTokenAbsent, http.StatusServiceUnavailable, "HSM unavailable", true, 5 * time.Second, false, "The HSM token is not present (removed, or its storage unreachable); the server reopens it when it is back."},
	{HSMDeviceError, http.StatusServiceUnavailable, "HSM unavailable", true, 5 * time.Second, false, "The HSM reported a device error; retry later, and check the HSM if it persists."},
	{LeaseExhausted, http.StatusServiceUnavailable, "Site lease exhausted", true, 5 * time.Second, true, "A site holds no unexpired lease with SNRs left; it asks headquarters for the next block: retry later (docs/sites.md)."},
	{SiteNotCurrent, http.StatusServiceUnavailable, "Site ledger not confirmed current", true, 5 * time.Second, true, "A site issues only once headquarters confirmed its ledger current since its start; retry later, or rebuild a site restored from an older backup (docs/sites.md)."},
	{HSMPINIncorrect, http.StatusServiceUnavailable, "HSM needs an operator", false, 0, false, "The HSM refused the PIN; an operator fixes hsm.pin and restarts (tacline never retries a PIN by itself)."},
	{HSMPINLocked, http.StatusServiceUnavailable, "HSM needs an operator", false, 0, false, "The HSM user PIN is locked or expired; the token's security officer must act."},
	{HSMKeyNotFound, http.StatusServiceUnavailable, "HSM needs an operator", false, 0, false, "A signing key is missing from the HSM; an operator restores it or rotates the issuer."},
	{WitnessMissing, http.StatusServiceUnavailable, "Headquarters needs an operator", false, 0, true, "Headquarters has no witness key (`audit.witness_key_label`), so it cosigns no site checkpoint and refuses every site sync: an operator at headquarters creates it (`tacline audit witness-key --generate`) and restarts (docs/sites.md)."},
	{HSMKeyUnsafe, http.StatusServiceUnavailable, "HSM needs an operator", false, 0, false, "A key in the HSM is extractable or not sensitive; an operator replaces it."},

	{LintFailed, http.StatusInternalServerError, "Certificate profile failed linting", false, 0, true, "The certificate to be issued failed zlint; the profile or configuration is wrong, not the request (the lint names are sent)."},
	{UpstreamRefused, http.StatusBadGateway, "Upstream CA refused the certificate", false, 0, true, "Issuer kind stepca: step-ca refused the request or returned a certificate other than the linted one; the intent was abandoned and its IMEIs voided (docs/stepca.md). Provision again with a new request id."},
	{Internal, http.StatusInternalServerError, "Internal error", false, 0, false, "A bug or an unexpected failure; the cause is in the server's log. Also any error without a code."},
	{InvalidConfig, http.StatusInternalServerError, "Internal error", false, 0, false, "The configuration is wrong; `field` names the setting (CLI and start-up)."},
	{LedgerInvariant, http.StatusInternalServerError, "Internal error", false, 0, false, "The ledger breaks one of its invariants; stop and investigate (`tacline ledger check`)."},
	{InsufficientSpace, http.StatusInsufficientStorage, "Insufficient storage", false, 0, false, "Operator commands only (`tacline ledger rebuild`, `tacline backup`): the filesystem has less free space than the command would write (the message says how much it needs, how much is free and where) and nothing was written, or it filled up while the command wrote (SQLite: the disk full; `pg_dump`: \"No space left on device\") and what it wrote was removed. Free space on that filesystem (or, for a backup, give `--to` a directory on a larger one), then run the command again."},

	{OutputFailed, http.StatusInternalServerError, "Output not written", false, 0, false, "A file the command or the console writes as its output (a reconciliation's category files and `summary.json`, a station's identity from `tacline station bootstrap`) could not be created or written: the output directory cannot be made, no permission, the filesystem full or read-only; the message (the server's log, for the console) names the file and the cause. The input was not at fault: fix the output directory (`--out`; for the console, its work directory) and run again."},

	{VerificationFailed, http.StatusInternalServerError, "Internal error", false, 0, false, "Station side only: an identity the server returned failed the station's checks."},
	{DevicesFailed, http.StatusInternalServerError, "Internal error", false, 0, false, "Station side only: a line simulation or load run left devices unprovisioned."},
}

var byCode = func() map[Code]Spec {
	m := make(map[Code]Spec, len(specs))
	for _, s := range specs {
		m[s.Code] = s
	}
	return m
}()

// stationSide lists the codes only the station client makes; no server
// answer carries them.
var stationSide = map[Code]bool{VerificationFailed: true, DevicesFailed: true}

// operatorSide lists the codes only operator commands make (and, for
// output_failed, the console's reconciliation page); no API answer carries
// them.
var operatorSide = map[Code]bool{InsufficientSpace: true, OutputFailed: true}

// StationSide reports whether only the station client makes this code (the
// server never answers with it).
func (s Spec) StationSide() bool { return stationSide[s.Code] }

// ServerSends reports whether an API answer may carry this code (not a
// station client's or an operator command's own).
func (s Spec) ServerSends() bool { return !stationSide[s.Code] && !operatorSide[s.Code] }

// Specs returns the table, one row per code.
func Specs() []Spec { return append([]Spec(nil), specs...) }

// Lookup returns the row of code; ok is false for a code the table does
// not know.
func Lookup(code Code) (Spec, bool) {
	s, ok := byCode[code]
	return s, ok
}

// SpecOf returns the row of code, or Internal's for a code the table does
// not know.
func SpecOf(code Code) Spec {
	if s, ok := byCode[code]; ok {
		return s
	}
	return byCode[Internal]
}
