package main

import (
	"context"
	"strconv"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tacline/tacline/store"
)

func init() {
	// lease-return-interrupted FILE LEASE CHUNKS runs `lease return LEASE
	// --force` on a SQLite ledger in chunks of 10 SNRs and interrupts it
	// (as Ctrl-C or a crash would) after CHUNKS committed chunks.
	scriptCmds["lease-return-interrupted"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 3 {
			ts.Fatalf("usage: lease-return-interrupted FILE LEASE CHUNKS")
		}
		id, err := strconv.ParseInt(args[1], 10, 64)
		ts.Check(err)
		after, err := strconv.Atoi(args[2])
		ts.Check(err)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		db, err := store.Open(ctx, store.Config{Driver: store.SQLite, DSN: ts.MkAbs(args[0])})
		ts.Check(err)
		defer db.Close()
		chunks := 0
		_, err = db.ReturnLeaseChunks(ctx, id, "test", 10, func(store.ReturnProgress) {
			if chunks++; chunks == after {
				cancel()
			}
		})
		if err == nil || chunks != after {
			ts.Fatalf("the forced return was not interrupted after %d chunks: %d chunks, %v", after, chunks, err)
		}
	}
}
