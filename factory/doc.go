// Package factory is the station side of tacline: what runs on a factory
// line next to the devices being programmed. It owns
//
//   - [Client], the HTTP client of the /v1 API over mutual TLS (the station's
//     certificate), with per-attempt timeouts and safe retries;
//   - [Device], a simulated device that makes its own key and CSR, as a
//     device's secure element would, and answers authenticity challenges;
//   - [VerifyIssued], the checks a station runs on every identity the server
//     returns before it programs it into a device, and [Verifier], the same
//     checks with each issuer chain verified once per run; both take a
//     [DeviceIdentity] (the serial and the CSR's public key), so a real
//     line, whose device keys never leave the secure element, uses them
//     as the simulator does;
//   - [VerifyAllocation] and [VerifyBinding], the same checks for a line
//     that pre-allocates IMEIs and binds devices later;
//   - [LoadCreds], the station credentials directory that `tacline station
//     enroll` writes.
//
// This is what a manufacturer's station software links. The line simulator
// and the load generator that drive it (`tacline station simulate`,
// `tacline bench provision`) live in package factory/sim, which production
// packages never import. Of tacline this package imports only the API's
// wire types (api/wire), imei, policy, internal/der, internal/retry and
// tacerr (besides the standard library), never the server packages, so a
// station build carries none of the server.
//
// The package promises:
//
//   - A request is retried only when the failure says a retry can succeed: a
//     network error (but not a TLS refusal), a per-attempt timeout, a
//     problem document with "retryable": true, HTTP 429, or HTTP
//     502/503/504 without a problem document (a proxy's answer). Every retry
//     of a POST carries the same request_id (the server is idempotent by
//     request id), waits an exponential backoff with full jitter
//     (internal/retry, the one retry policy) and at least what a Retry-After
//     header asks, and starts no later than the retry budget after the first
//     attempt (ClientConfig.RetryBudget, default 2 minutes, so a line rides
//     out a database failover or an HSM reconnect). Any other failure is
//     returned at once.
//   - Server errors come back as *[APIError] (use errors.As) carrying the
//     RFC 9457 problem document; network failures come back as a tacerr
//     error of code unavailable wrapping the net/http error, or, when no
//     retry can heal them, unauthorized (the server refused the station's
//     certificate) or invalid_config (the server's certificate does not
//     verify against ca_file).
//   - [VerifyIssued] accepts an identity only if the certificate chains to
//     the given roots, its SAN URIs are exactly the RFC 7254 URNs of the
//     returned IMEIs, every IMEI is valid and inside one of the station's
//     pools, its key is the device's key and its subject serialNumber is the
//     device serial. Each failed check is a distinct error (errors.Is with
//     ErrChain, ErrSAN, ErrIMEI, ErrIMEIOutsidePool, ErrPublicKey,
//     ErrDeviceSerial, ErrMalformed) of code verification_failed.
package factory
