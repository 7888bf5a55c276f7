package api

import _ "embed"

// openAPIDoc is the OpenAPI 3 document of the API, served at
// /v1/openapi.yaml.
//
//go:embed openapi.yaml
var openAPIDoc []byte

// OpenAPI returns the OpenAPI 3 document of the API (YAML).
func OpenAPI() []byte { return append([]byte(nil), openAPIDoc...) }
