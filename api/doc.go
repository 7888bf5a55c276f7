// Package api is tacline's HTTP server: routing of the /v1 API (the JSON
// types live in package api/wire), mutual-TLS identity and roles, strict
// request decoding, RFC 9457 problem+json errors, the OpenAPI document,
// Prometheus metrics and the health endpoints. It holds no business logic:
// every /v1 request becomes one call of a Provisioner use case.
//
// It promises:
//
//   - Every /v1 and /metrics request is authenticated by a client
//     certificate verified against the configured CAs; without one the answer
//     is 401 problem+json. /healthz and /readyz need no certificate.
//   - A station's record is looked up on every request (Provisioner.Station),
//     so disabling a station takes effect on its next request.
//   - Which role may call which route is decided by one table (routes in
//     routes.go, documented in docs/api.md); a role outside it gets 403.
//   - Request bodies are application/json, at most wire.MaxBodyBytes, with no
//     unknown fields, no wrong types and no trailing data; otherwise the
//     answer is a 4xx problem naming the field.
//   - Errors are mapped from tacerr codes to HTTP statuses in one table
//     (problem.go); the cause of an internal error is logged, never sent.
//   - The access log carries no PINs, CSRs or certificates.
package api
