package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/tacerr"
)

// statusOf is what problemFor decided besides the document: the HTTP
// status and the Retry-After header in whole seconds (0: none).
type statusOf struct {
	status     int
	retryAfter int
}

// genericDetail is the detail of problems whose message is not sent.
var genericDetail = map[int]string{
	http.StatusInternalServerError: "the server failed to handle the request; the cause is in its log",
	http.StatusServiceUnavailable:  "a dependency of the server is unavailable; the cause is in its log",
}

// operatorDetail is the detail of a 503 that is not retryable.
const operatorDetail = "the server needs an operator (the cause is in its log); retrying will not help"

// ProvisionedError is what an error with code device_already_provisioned
// implements (found with errors.As) to carry the device's existing IMEIs
// into the problem document. Without it the server looks the device up.
type ProvisionedError interface {
	error
	ExistingIMEIs() []imei.IMEI
}

// problemFor builds the problem document for err. Status, title,
// retryability, Retry-After and whether the message may be sent all come
// from tacerr's table (tacerr.Spec), the one place that decides them. A
// code missing from the table is answered as internal (500, not retryable)
// but keeps its code, which is stable API.
func problemFor(err error) (wire.Problem, statusOf) {
	code := tacerr.CodeOf(err)
	spec, known := tacerr.Lookup(code)
	if !known {
		spec = tacerr.SpecOf(tacerr.Internal)
	}
	p := wire.Problem{
		Type:      "https://tacline.dev/problems/" + string(code),
		Title:     spec.Title,
		Status:    spec.Status,
		Code:      string(code),
		Retryable: spec.Retryable,
	}
	st := statusOf{status: spec.Status}
	e, isTE := tacerr.As(err)
	if spec.Retryable {
		d := spec.RetryAfter
		if isTE {
			d = e.RetryAfter()
		}
		st.retryAfter = int((d + time.Second - 1) / time.Second)
	}
	if isTE && spec.Detail && known {
		p.Detail = e.Message
		p.Field = e.Field
	}
	if p.Detail == "" {
		p.Detail = genericDetail[spec.Status]
		if spec.Status == http.StatusServiceUnavailable && !spec.Retryable {
			p.Detail = operatorDetail
		}
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
