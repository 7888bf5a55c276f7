package api

import (
	"bytes"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/tacerr"
)

type openAPIDocument struct {
	OpenAPI    string                                     `yaml:"openapi"`
	Paths      map[string]map[string]openAPIOperation     `yaml:"paths"`
	Components struct{ Schemas map[string]openAPISchema } `yaml:"components"`
}

type openAPIOperation struct {
	OperationID string                 `yaml:"operationId"`
	Responses   map[string]any         `yaml:"responses"`
	Security    *[]map[string][]string `yaml:"security"`
	Parameters  []map[string]string    `yaml:"parameters"`
}

type openAPISchema struct {
	Required   []string       `yaml:"required"`
	Properties map[string]any `yaml:"properties"`
}

func parseOpenAPI(t *testing.T) openAPIDocument {
	t.Helper()
	var doc openAPIDocument
	if err := yaml.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatalf("api/openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	return doc
}

// TestOpenAPIRoutes: every registered route is documented with its roles,
// and every documented operation is a route.
func TestOpenAPIRoutes(t *testing.T) {
	doc := parseOpenAPI(t)
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	for _, rt := range routes {
		method, path, _ := strings.Cut(rt.pattern, " ")
		op, ok := doc.Paths[path][strings.ToLower(method)]
		if !ok {
			t.Errorf("route %s is not in api/openapi.yaml", rt.pattern)
			continue
		}
		delete(documented, rt.pattern)
		// The roles are the operation's mutualTLS security requirement
		// (OpenAPI 3.1 lets non-OAuth schemes list role names); a public
		// route has none, a route open to any caller inherits the
		// document's.
		var want *[]map[string][]string
		switch {
		case rt.public:
			want = &[]map[string][]string{}
		case rt.access != nil:
			roles := make([]string, len(rt.roles()))
			for i, r := range rt.roles() {
				roles[i] = string(r)
			}
			want = &[]map[string][]string{{"mutualTLS": roles}}
		}
		if !reflect.DeepEqual(op.Security, want) {
			t.Errorf("%s: security %v, the routes table says %v", rt.pattern, deref(op.Security), deref(want))
		}
		if op.OperationID == "" || len(op.Responses) == 0 {
			t.Errorf("%s: no operationId or no responses", rt.pattern)
		}
		for name, ref := range map[string]string{"imei": "#/components/parameters/IMEI", "serial": "#/components/parameters/Serial"} {
			if strings.Contains(path, "{"+name+"}") && !slices.ContainsFunc(op.Parameters, func(p map[string]string) bool { return p["$ref"] == ref }) {
				t.Errorf("%s: path parameter %s not documented", rt.pattern, name)
			}
		}
	}
	for op := range documented {
		t.Errorf("api/openapi.yaml documents %s, which is not a route", op)
	}
}

func deref(p *[]map[string][]string) any {
	if p == nil {
		return "(the document's: mutualTLS, any role)"
	}
	return *p
}

// TestOpenAPISchemas: each schema's properties are exactly the JSON fields
// of its api/wire type.
func TestOpenAPISchemas(t *testing.T) {
	doc := parseOpenAPI(t)
	types := map[string]any{
		"ProvisionRequest": wire.ProvisionRequest{}, "ProvisionResponse": wire.ProvisionResponse{},
		"AllocationRequest": wire.AllocationRequest{}, "AllocationResponse": wire.AllocationResponse{},
		"BindRequest": wire.BindRequest{}, "VoidRequest": wire.VoidRequest{}, "ReissueRequest": wire.ReissueRequest{},
		"RevokeRequest": wire.RevokeRequest{}, "IMEIStatus": wire.IMEIStatus{}, "DeviceStatus": wire.DeviceStatus{},
		"PoolStatus": wire.PoolStatus{}, "PoolList": wire.PoolList{}, "Problem": wire.Problem{},
	}
	for name, v := range types {
		s, ok := doc.Components.Schemas[name]
		if !ok {
			t.Errorf("schema %s missing", name)
			continue
		}
		var fields []string
		rt := reflect.TypeOf(v)
		for i := range rt.NumField() {
			tag, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
			fields = append(fields, tag)
		}
		var props []string
		for p := range s.Properties {
			props = append(props, p)
		}
		sort.Strings(fields)
		sort.Strings(props)
		if !slices.Equal(fields, props) {
			t.Errorf("schema %s has properties %v, wire.%s has fields %v", name, props, name, fields)
		}
		for _, r := range s.Required {
			if !slices.Contains(props, r) {
				t.Errorf("schema %s requires %s, which it does not define", name, r)
			}
		}
	}
}

// TestOpenAPIServed: the document is served as is to any authenticated
// caller.
func TestOpenAPIServed(t *testing.T) {
	pki := newPKI(t)
	ts := startServer(t, pki, newFake(t, pki), nil)
	cert := pki.clientCert(t, ca.Station{Roles: []string{"regulator"}})
	r := ts.do(t, ts.client(&cert), "GET", wire.PathOpenAPI, nil)
	if r.status != 200 || r.header.Get("Content-Type") != "application/yaml" || !bytes.Equal(r.body, openAPIDoc) || !bytes.Equal(OpenAPI(), openAPIDoc) {
		t.Fatalf("GET %s: %d %q, %d bytes", wire.PathOpenAPI, r.status, r.header.Get("Content-Type"), len(r.body))
	}
}

// TestOpenAPIErrorCodes: the Problem schema's code description lists every
// code the server sends, under the HTTP status api/problem.go maps it to
// (integrators generate clients from the document and never read
// docs/api.md).
func TestOpenAPIErrorCodes(t *testing.T) {
	doc := parseOpenAPI(t)
	code, _ := doc.Components.Schemas["Problem"].Properties["code"].(map[string]any)
	desc, _ := code["description"].(string)
	listed := map[string]int{}
	for _, line := range strings.Split(desc, "\n") {
		status, codes, ok := strings.Cut(strings.TrimPrefix(line, "- "), ": ")
		n, err := strconv.Atoi(status)
		if !strings.HasPrefix(line, "- ") || !ok || err != nil {
			continue
		}
		for _, c := range strings.Split(codes, ", ") {
			listed[c] = n
		}
	}
	want := map[string]int{}
	for _, sp := range tacerr.Specs() {
		if !sp.ServerSends() {
			continue
		}
		want[string(sp.Code)] = sp.Status
	}
	for c, st := range want {
		if listed[c] != st {
			t.Errorf("api/openapi.yaml Problem.code: the server sends %s with %d; list it on the line \"- %d: ...\"", c, st, st)
		}
	}
	for c, st := range listed {
		if _, ok := want[c]; !ok {
			t.Errorf("api/openapi.yaml Problem.code lists %s under %d, which the server never sends", c, st)
		}
	}
}
