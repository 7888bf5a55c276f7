// Package e2e holds the register's end-to-end tests: the real tacline
// binary running the register simulator and the delivery worker as
// separate processes, against a real ledger, with faults injected at the
// simulator and the worker SIGKILLed mid-delivery. It has no non-test code.
//
// The binary is built once in TestMain, or taken from $TACLINE_BIN.
package e2e
