// Package tacerr is tacline's one error type. Every error that crosses a
// package boundary towards a user carries a stable Code (part of the API:
// scripts and stations switch on it), the field at fault when there is one,
// and a message that says what was wrong and what to do.
//
// One table (Specs, in table.go) says for every code its HTTP status,
// whether retrying the same request can succeed without a person acting,
// the Retry-After hint of a retryable code, and what the code means. The
// HTTP layer (api) and the station client read it; nothing else decides
// retryability. docs/errors.md is generated from it (go test ./tacerr
// -update), and tests fail when a code is missing from the table, the
// document or the HTTP mapping.
package tacerr

import (
	"errors"
	"fmt"
	"time"
)

// Code is a stable, machine-readable error code. Codes never change meaning;
// new ones may be added.
type Code string

// The codes. Each has one row in the table (table.go); docs/errors.md is
// generated from it and a test fails when either misses a code.
const (
	Internal       Code = "internal"       // a bug or an unexpected failure
	InvalidInput   Code = "invalid_input"  // a field is missing, malformed or out of range
	InvalidConfig  Code = "invalid_config" // the configuration file is wrong
	NotFound       Code = "not_found"      // generic: the named object does not exist
	Conflict       Code = "conflict"       // the change collides with existing state
	Unavailable    Code = "unavailable"    // a dependency is down; retry later
	Unauthorized   Code = "unauthorized"   // no or unknown client identity
	Forbidden      Code = "forbidden"      // identity known, role not allowed
	NotOwner       Code = "not_owner"      // role allowed, but the device, IMEI or reservation belongs to another factory
	InvalidIMEI    Code = "invalid_imei"   // an IMEI failed to parse
	TACUnknown     Code = "tac_unknown"    // the TAC is not in the catalogue
	TACNotApproved Code = "tac_not_approved"

	PoolNotFound  Code = "pool_not_found"
	PoolExhausted Code = "pool_exhausted"
	PoolOverlap   Code = "pool_overlap"

	RequestConflict          Code = "request_conflict"
	DeviceAlreadyProvisioned Code = "device_already_provisioned"
	ReservationNotFound      Code = "reservation_not_found"
	InvalidState             Code = "invalid_state"
	StationNotAuthorized     Code = "station_not_authorized"

	CSRInvalid Code = "csr_invalid"
	KeyReused  Code = "key_reused"
	LintFailed Code = "lint_failed"

	HSMUnavailable  Code = "hsm_unavailable"
	HSMPINIncorrect Code = "hsm_pin_incorrect"
	HSMPINLocked    Code = "hsm_pin_locked"
	HSMKeyNotFound  Code = "hsm_key_not_found"
	HSMKeyUnsafe    Code = "hsm_key_unsafe"
	HSMDeviceError  Code = "hsm_device_error"
	HSMTokenAbsent  Code = "hsm_token_not_present"

	LedgerInvariant Code = "ledger_invariant"

	// InsufficientSpace: an operator command (ledger rebuild, backup)
	// measured what it would write and the filesystem has less free space
	// (nothing was written), or the filesystem filled up while it wrote
	// (what it wrote was removed). Operator commands only: the server never
	// answers with it.
	InsufficientSpace Code = "insufficient_space"

	// OutputFailed: a file a command or the console writes as its output
	// (a reconciliation's category files and summary) could not be made or
	// written: a directory that cannot be created, no permission, a full
	// or read-only filesystem. Nothing was wrong with the input.
	OutputFailed Code = "output_failed"

	RequestTooLarge      Code = "request_too_large"      // the request body exceeds the API's limit
	UnsupportedMediaType Code = "unsupported_media_type" // the request body is not application/json

	VerificationFailed Code = "verification_failed" // an identity the server returned failed the station's checks
	DevicesFailed      Code = "devices_failed"      // a line simulation or load run left devices unprovisioned

	RateLimited Code = "rate_limited" // too many requests from one caller; retry after Retry-After

	UpstreamRefused Code = "upstream_refused" // the upstream CA (step-ca) refused, or returned a certificate other than the linted one

	// Sites (docs/sites.md).
	LeaseExhausted Code = "lease_exhausted"  // a site holds no lease with SNRs left; retry when HQ has granted the next block
	LeaseViolation Code = "lease_violation"  // a site reported an IMEI outside its leases, or a checkpoint inconsistent with the last one HQ verified: the batch is refused
	SiteNotCurrent Code = "site_not_current" // a site has not proven to HQ since its start that its ledger is current; retry when HQ confirmed it
	WitnessMissing Code = "witness_missing"  // headquarters has no witness key, so it cosigns no site checkpoint; an operator at HQ sets one up
)

// Error is tacline's error. Construct it with New, Field or Wrap (never as
// a literal: a test refuses &tacerr.Error{} outside this package), so that
// its retryability is its code's, from the one table (Spec).
type Error struct {
	Code    Code
	Field   string // the input field at fault, dotted path ("pools[0].snr_end"); empty if none
	Message string // what was wrong and what to do
	Err     error  // the cause, if any
	// retryAfter overrides the code's Retry-After hint (a rate limiter
	// knows when its bucket refills); zero: the code's.
	retryAfter time.Duration
}

func (e *Error) Error() string {
	s := string(e.Code)
	if e.Field != "" {
		s += " (" + e.Field + ")"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether the same request may succeed later without a
// person acting: the code's retryability from the table.
func (e *Error) Retryable() bool { return SpecOf(e.Code).Retryable }

// RetryAfter is how long a caller should wait before retrying: the hint
// set with WithRetryAfter, else the code's; zero when not retryable.
func (e *Error) RetryAfter() time.Duration {
	s := SpecOf(e.Code)
	if !s.Retryable {
		return 0
	}
	if e.retryAfter > 0 {
		return e.retryAfter
	}
	return s.RetryAfter
}

// WithRetryAfter sets the Retry-After hint of a retryable error (rounded
// up to whole seconds, as HTTP sends it) and returns e. It has no effect on
// an error whose code is not retryable.
func (e *Error) WithRetryAfter(d time.Duration) *Error {
	if d > 0 {
		e.retryAfter = (d + time.Second - 1).Truncate(time.Second)
	}
	return e
}

// New returns an Error with a formatted message.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Field returns an error that names the input field at fault.
func Field(code Code, field, format string, args ...any) *Error {
	e := New(code, format, args...)
	e.Field = field
	return e
}

// Wrap returns an Error with code wrapping cause.
func Wrap(code Code, cause error, format string, args ...any) *Error {
	e := New(code, format, args...)
	e.Err = cause
	return e
}

// Prefixed returns a copy of err (a tacline error, else err wrapped as
// fallback) whose message starts with what: the code, field and cause are
// kept.
func Prefixed(what string, err error, fallback Code) *Error {
	e, ok := As(err)
	if !ok {
		return Wrap(fallback, err, "%s", what)
	}
	c := *e
	c.Message = what + ": " + e.Message
	return &c
}

// CodeOf returns the code of the first *Error in err's chain, or Internal.
func CodeOf(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// Is reports whether err carries code.
func Is(err error, code Code) bool { return err != nil && CodeOf(err) == code }

// IsRetryable reports whether err says that a retry may succeed: its code
// is retryable. An error without a code is not.
func IsRetryable(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Retryable()
}

// As returns the first *Error in err's chain.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
