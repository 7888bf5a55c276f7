// Package console is tacline's web front-end for people: the staff console
// at /console/ (operators, auditors, regulators, admins) and the public
// IMEI check at /check, both served by `tacline serve` on the API's
// listener.
//
// The console promises:
//   - Identity and roles are the API's: the caller's client certificate is
//     read by the API (api.Server.Caller), and a page shows only what its
//     roles may see; a station certificate, no certificate or a missing
//     role gets a page that says why, never a blank 403.
//   - It reads and changes the ledger only through the methods the API and
//     the CLI use (provisioner, store, audit, register), so its numbers are
//     theirs.
//   - Every page carries a strict Content-Security-Policy (scripts and
//     styles only from the embedded files, frame-ancestors 'none'), every
//     value is escaped by html/template, and every form that changes state
//     carries a CSRF token bound to the caller's certificate; a POST without
//     it (or from another origin) changes nothing.
//   - Pages work without JavaScript; scripts only refresh live panels and
//     check IMEI digits as they are typed.
//   - /check needs no certificate, shares the public lookup's rate limiter
//     and shows nothing personal or key-related; its texts live in one
//     catalogue (texts.go), which a texts file (console.check_texts)
//     translates.
//
// Reconciliation runs and audit exports made from the console are kept in
// memory (the newest few, their files under the work directory) and are
// lost on restart: the CLI (`tacline reconcile`, `tacline audit export`)
// remains the record-keeping path.
package console
