package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/internal/pemblock"
	"github.com/tacline/tacline/tacerr"
)

// decodeBody decodes r's JSON body into v strictly: media type
// application/json, at most wire.MaxBodyBytes, no unknown fields, no wrong
// types, exactly one JSON value.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeBodyLimit(w, r, v, wire.MaxBodyBytes)
}

// decodeBodyLimit is decodeBody with another size limit (a route that
// needs more than wire.MaxBodyBytes and says so in the OpenAPI document).
func decodeBodyLimit(w http.ResponseWriter, r *http.Request, v any, limit int64) error {
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return tacerr.Field(tacerr.UnsupportedMediaType, "Content-Type", "the body must be sent as application/json, got %q", ct)
	}
	if r.ContentLength > limit {
		return tooLarge(limit)
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		return jsonError(err, limit)
	}
	if err := checkKeys(data); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err, limit)
	}
	if _, err := dec.Token(); err != io.EOF {
		return tacerr.New(tacerr.InvalidInput, "the body must hold exactly one JSON object; data follows it at byte %d", dec.InputOffset())
	}
	return nil
}

// checkKeys refuses what encoding/json would take silently: a name twice
// in one object (it keeps the last, so whatever reads the first, a proxy
// or a log, sees another request than the one run) and a name that
// matches a field only as encoding/json compares names, ignoring case and
// folding ſ to s and K to k. Every field of the API is lower-case ASCII
// letters, digits and '_', so any other name is not one of them. Malformed
// JSON is left to the decoder, which says where.
func checkKeys(data []byte) error {
	type object struct {
		keys    map[string]bool // a map: a body of many names costs linear time
		wantKey bool
	}
	var stack []*object
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // the end, or malformed: the decoder reports it
		}
		var top *object
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if k, ok := tok.(string); ok && top != nil && top.wantKey {
			switch {
			case !fieldName(k):
				return tacerr.Field(tacerr.InvalidInput, k, "unknown field %q: field names are lower case (check its spelling against the API: docs/api.md, /v1/openapi.yaml)", k)
			case top.keys[k]:
				return tacerr.Field(tacerr.InvalidInput, k, "field %q appears more than once in one object: send each field once", k)
			}
			top.keys[k], top.wantKey = true, false
			continue
		}
		if top != nil && !top.wantKey {
			top.wantKey = true // this token starts (or is) the value
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &object{keys: map[string]bool{}, wantKey: true})
		case json.Delim('['):
			stack = append(stack, nil)
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
	}
}

// fieldName reports whether k is spelled as the API's fields are.
func fieldName(k string) bool {
	for i := 0; i < len(k); i++ {
		if c := k[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return k != ""
}

func tooLarge(limit int64) error {
	return tacerr.New(tacerr.RequestTooLarge, "the request body is larger than %d bytes", limit)
}

// jsonError turns a decoding error into an invalid_input error naming the
// field when there is one.
func jsonError(err error, limit int64) error {
	var (
		mbe *http.MaxBytesError
		se  *json.SyntaxError
		ute *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &mbe):
		return tooLarge(limit)
	case errors.Is(err, io.EOF):
		return tacerr.New(tacerr.InvalidInput, "the request body is empty: send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return tacerr.New(tacerr.InvalidInput, "the JSON body ends before the object is complete")
	case errors.As(err, &se):
		return tacerr.New(tacerr.InvalidInput, "the body is not valid JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	case errors.As(err, &ute):
		if ute.Field == "" {
			return tacerr.New(tacerr.InvalidInput, "the body must be a JSON object, got a JSON %s", ute.Value)
		}
		return tacerr.Field(tacerr.InvalidInput, ute.Field, "must be a JSON %s, got a JSON %s", jsonKind(ute), ute.Value)
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name, uerr := strconv.Unquote(f)
		if uerr != nil {
			name = f
		}
		return tacerr.Field(tacerr.InvalidInput, name, "unknown field %q: check its spelling against the API (docs/api.md, /v1/openapi.yaml)", name)
	}
	return tacerr.Wrap(tacerr.InvalidInput, err, "the body cannot be decoded")
}

// jsonKind names the JSON type a Go field expects.
func jsonKind(e *json.UnmarshalTypeError) string {
	switch e.Type.Kind().String() {
	case "string":
		return "string"
	case "slice", "array":
		return "array"
	case "struct", "map":
		return "object"
	case "bool":
		return "boolean"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "integer"
	case "float32", "float64":
		return "number"
	}
	return e.Type.String()
}

// parseIMEI parses an IMEI from a path or body field; errors name the field.
func parseIMEI(s, field string) (imei.IMEI, error) {
	m, err := imei.Parse(s)
	if err != nil {
		msg := err.Error()
		if e, ok := tacerr.As(err); ok {
			msg = e.Message
		}
		return imei.IMEI{}, tacerr.Field(tacerr.InvalidIMEI, field, "%q is not a valid IMEI: %s", truncate(s, 40), msg)
	}
	return m, nil
}

// parseIMEIs parses a list of IMEIs from body field field.
func parseIMEIs(ss []string, field string) ([]imei.IMEI, error) {
	out := make([]imei.IMEI, len(ss))
	for i, s := range ss {
		m, err := parseIMEI(s, fmt.Sprintf("%s[%d]", field, i))
		if err != nil {
			return nil, err
		}
		out[i] = m
	}
	return out, nil
}

// csrBytes returns the CSR of a request: PEM as sent, or base64 DER
// decoded. Its content is checked by the provisioner (policy.ParseCSR).
func csrBytes(s string) ([]byte, error) {
	t := strings.TrimSpace(s)
	switch {
	case t == "":
		return nil, tacerr.Field(tacerr.CSRInvalid, "csr", "is required: the device's PKCS#10 request, PEM or base64 DER")
	case !pemblock.DER([]byte(t)):
		return []byte(s), nil // PEM: policy.DecodeCSR holds it to pemblock's rules
	}
	der, err := base64.StdEncoding.DecodeString(t)
	if err != nil {
		return nil, tacerr.Field(tacerr.CSRInvalid, "csr", "is neither PEM (-----BEGIN CERTIFICATE REQUEST-----) nor base64 DER")
	}
	return der, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
