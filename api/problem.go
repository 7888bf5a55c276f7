package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/tacerr"
)

// statusOf is how a tacerr code reaches HTTP. detail says whether the
// error's message may be sent to the client (it never includes the wrapped
// cause); retryAfter is the Retry-After header in seconds (0: none).
type statusOf struct {
	status     int
	title      string
	detail     bool
	retryAfter int
}

// problems maps every tacerr code to its HTTP status: the one table. A code
// missing here is answered as internal (500) and logged.
var problems = map[tacerr.Code]statusOf{
	tacerr.InvalidInput:         {http.StatusBadRequest, "Invalid input", true, 0},
	tacerr.CSRInvalid:           {http.StatusBadRequest, "Invalid certificate signing request", true, 0},
	tacerr.InvalidIMEI:          {http.StatusBadRequest, "Invalid IMEI", true, 0},
	tacerr.RequestTooLarge:      {http.StatusRequestEntityTooLarge, "Request body too large", true, 0},
	tacerr.UnsupportedMediaType: {http.StatusUnsupportedMediaType, "Unsupported media type", true, 0},

	tacerr.Unauthorized:         {http.StatusUnauthorized, "Unauthorized", true, 0},
	tacerr.Forbidden:            {http.StatusForbidden, "Forbidden", true, 0},
	tacerr.StationNotAuthorized: {http.StatusForbidden, "Station not authorized", true, 0},

	tacerr.NotFound:            {http.StatusNotFound, "Not found", true, 0},
	tacerr.PoolNotFound:        {http.StatusNotFound, "Pool not found", true, 0},
	tacerr.ReservationNotFound: {http.StatusNotFound, "Reservation not found", true, 0},

	tacerr.Conflict:                 {http.StatusConflict, "Conflict", true, 0},
	tacerr.RequestConflict:          {http.StatusConflict, "Request id reused with a different request", true, 0},
	tacerr.DeviceAlreadyProvisioned: {http.StatusConflict, "Device already provisioned", true, 0},
	tacerr.KeyReused:                {http.StatusConflict, "Device key already bound to another device", true, 0},
	tacerr.InvalidState:             {http.StatusConflict, "Invalid state for this operation", true, 0},
	tacerr.PoolOverlap:              {http.StatusConflict, "Pool overlaps another pool", true, 0},
	tacerr.PoolExhausted:            {http.StatusConflict, "Pool exhausted", true, 0},

	tacerr.TACNotApproved: {http.StatusUnprocessableEntity, "TAC not approved for this market", true, 0},
	tacerr.TACUnknown:     {http.StatusUnprocessableEntity, "TAC not in the catalogue", true, 0},

	tacerr.LeaseViolation: {http.StatusConflict, "Site events refused", true, 0},
	tacerr.LeaseExhausted: {http.StatusServiceUnavailable, "Site lease exhausted", true, 5},
	tacerr.SiteNotCurrent: {http.StatusServiceUnavailable, "Site ledger not confirmed current", true, 5},

	tacerr.LintFailed: {http.StatusInternalServerError, "Certificate profile failed linting", true, 0},

	tacerr.HSMUnavailable: {http.StatusServiceUnavailable, "HSM unavailable", false, 1},
	tacerr.Unavailable:    {http.StatusServiceUnavailable, "Service unavailable", false, 1},
	tacerr.HSMTokenAbsent: {http.StatusServiceUnavailable, "HSM unavailable", false, 5},
	tacerr.HSMDeviceError: {http.StatusServiceUnavailable, "HSM unavailable", false, 5},
	// The HSM needs an operator: retrying will not help.
	tacerr.HSMPINIncorrect: {http.StatusServiceUnavailable, "HSM needs an operator", false, 0},
	tacerr.HSMPINLocked:    {http.StatusServiceUnavailable, "HSM needs an operator", false, 0},
	tacerr.HSMKeyNotFound:  {http.StatusServiceUnavailable, "HSM needs an operator", false, 0},
	tacerr.HSMKeyUnsafe:    {http.StatusServiceUnavailable, "HSM needs an operator", false, 0},

	tacerr.Internal:        {http.StatusInternalServerError, "Internal error", false, 0},
	tacerr.InvalidConfig:   {http.StatusInternalServerError, "Internal error", false, 0},
	tacerr.LedgerInvariant: {http.StatusInternalServerError, "Internal error", false, 0},
}

// genericDetail is the detail of problems whose message is not sent.
var genericDetail = map[int]string{
	http.StatusInternalServerError: "the server failed to handle the request; the cause is in its log",
	http.StatusServiceUnavailable:  "a dependency of the server is unavailable; the cause is in its log",
}

// ProvisionedError is what an error with code device_already_provisioned
// implements (found with errors.As) to carry the device's existing IMEIs
// into the problem document. Without it the server looks the device up.
type ProvisionedError interface {
	error
	ExistingIMEIs() []imei.IMEI
}

// problemFor builds the problem document for err and returns the table
// entry it used.
func problemFor(err error) (wire.Problem, statusOf) {
	code := tacerr.CodeOf(err)
	st, ok := problems[code]
	if !ok {
		st = problems[tacerr.Internal]
	}
	p := wire.Problem{
		Type:      "https://tacline.dev/problems/" + string(code),
		Title:     st.title,
		Status:    st.status,
		Code:      string(code),
		Retryable: tacerr.IsRetryable(err),
	}
	if !ok {
		// Codes unknown to this table stay visible (they are stable API)
		// but their messages are not sent.
		p.Title = problems[tacerr.Internal].title
	}
	if e, isTE := tacerr.As(err); isTE && st.detail && ok {
		p.Detail = e.Message
		p.Field = e.Field
	}
	if p.Detail == "" {
		p.Detail = genericDetail[st.status]
	}
	var pe ProvisionedError
	if code == tacerr.DeviceAlreadyProvisioned && errors.As(err, &pe) {
		p.IMEIs = imeiStrings(pe.ExistingIMEIs())
	}
	return p, st
}

// writeProblem sends p with status st.
func writeProblem(w http.ResponseWriter, p wire.Problem, st statusOf) {
	h := w.Header()
	h.Set("Content-Type", wire.ProblemContentType)
	h.Set("Cache-Control", "no-store")
	if st.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(st.retryAfter))
	}
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

func imeiStrings(ms []imei.IMEI) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.String()
	}
	return out
}
