package main

import (
	"database/sql"

	_ "github.com/mattn/go-sqlite3"
	"github.com/rogpeppe/go-internal/testscript"
)

func init() {
	// ledger-sql FILE STATEMENT runs one SQL statement on a SQLite ledger
	// behind tacline's back, to plant the kind of fault a buggy writer or a
	// hand edit would leave (the ledger check must then find it).
	scriptCmds["ledger-sql"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 2 {
			ts.Fatalf("usage: ledger-sql FILE STATEMENT")
		}
		db, err := sql.Open("sqlite3", "file:"+ts.MkAbs(args[0]))
		if err != nil {
			ts.Fatalf("open: %v", err)
		}
		defer db.Close()
		_, err = db.Exec(args[1])
		if neg != (err != nil) {
			ts.Fatalf("ledger-sql %q: %v", args[1], err)
		}
	}
}
