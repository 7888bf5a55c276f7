// Package audit is tacline's tamper-evident event log: every ledger event
// (store.Event) becomes one leaf of an append-only Merkle tree (RFC 6962
// hashing, golang.org/x/mod/sumdb/tlog), whose checkpoints are signed by an
// ECDSA P-256 key that lives in the HSM.
//
// The package owns the audit tables of the ledger database (audit_head,
// audit_leaves, audit_hashes, audit_imeis, audit_checkpoints; migrations
// 0002_audit.sql of package store) and promises:
//
//   - a leaf is appended in the same transaction as the ledger change it
//     records ([Log] is a store.Sink), so an event is in the log if and only
//     if its change committed;
//   - leaf indexes are assigned under a lock on one head row, so several
//     replicas writing to one PostgreSQL database extend one tree and never
//     fork it;
//   - every leaf has one canonical, versioned encoding ([EncodeEvent],
//     documented in docs/audit-format.md) that a third party can re-implement;
//   - tacline never signs a checkpoint that is not consistent with the
//     previous signed checkpoint (the consistency proof is checked before the
//     signature is made);
//   - exports ([Export]) are verified offline by [Verify], with no database
//     and no HSM, and inclusion proofs for one IMEI ([Prove]) by [VerifyProof].
//
// Checkpoints use the C2SP tlog-checkpoint body and the C2SP signed-note
// envelope with signature type 0x02 (ECDSA P-256 over SHA-256, key id the
// first four bytes of SHA-256 of the key's DER SubjectPublicKeyInfo):
// [NewNoteSigner] wraps any crypto.Signer (the HSM's), [NewNoteVerifier] and
// [VerifierKey] give the verifier and its "name+hash+base64" string form.
package audit
