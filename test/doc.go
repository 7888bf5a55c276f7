// Package test holds tacline's end-to-end tests: they start the real
// tacline binary as separate processes (the server, `tacline demo`,
// `tacline ledger check`) over real SoftHSM2 tokens, real SQLite files and
// real PostgreSQL databases, and judge the outcome from outside, by what
// the processes answered and what the ledger holds.
//
// It promises that the crash test (TestCrash) SIGKILLs the server at
// random moments at least 20 times per database while concurrent stations
// provision devices, and then proves that no IMEI went to two devices, no
// certificate serial was issued twice, every bound IMEI is certified with
// its device's key, every answer a station received is in the ledger as
// received, and leftovers of unanswered requests are voided as abandoned,
// never reused. The random seed of a run is logged so that a failure can be
// replayed (TACLINE_CRASH_SEED).
//
// The tacline binary is taken from TACLINE_BIN (make test builds it) or
// built once into a temporary directory by TestMain. PostgreSQL is reached
// through TACLINE_TEST_PG_DSN (see store/storetest). The package has no
// non-test code besides this comment.
package test
