package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/store"
)

// audit-emit FROM N appends N synthetic ledger events (IMEI TAC 35209900,
// SNR FROM..FROM+N-1) to the audit log of the SQLite ledger $WORK/ledger.db,
// as the ledger's own changes would.
func init() {
	scriptCmds["audit-emit"] = func(ts *testscript.TestScript, neg bool, args []string) {
		if neg || len(args) != 2 {
			ts.Fatalf("usage: audit-emit FROM N")
		}
		from, err1 := strconv.Atoi(args[0])
		n, err2 := strconv.Atoi(args[1])
		if err1 != nil || err2 != nil {
			ts.Fatalf("usage: audit-emit FROM N")
		}
		ctx := context.Background()
		db, err := store.Open(ctx, store.Config{Driver: store.SQLite, DSN: ts.MkAbs("ledger.db")})
		ts.Check(err)
		defer db.Close()
		l, err := audit.New(db, audit.Config{Origin: "tacline.local/audit", KeyLabel: "audit-checkpoint"}, nil)
		ts.Check(err)
		l.Attach()
		ts.Check(db.InTx(ctx, func(tx *store.Tx) error {
			for i := from; i < from+n; i++ {
				tx.Emit(store.Event{
					Type:      store.EventIMEIBound,
					Time:      time.UnixMicro(1_790_000_000_000_000 + int64(i)).UTC(),
					Actor:     "station-1",
					RequestID: fmt.Sprintf("req-%d", i),
					TAC:       "35209900",
					IMEIs:     []string{imei15(35209900_000000 + int64(i))},
				})
			}
			return nil
		}))
	}
}

// imei15 appends the Luhn check digit to a 14-digit number.
func imei15(n int64) string {
	s := fmt.Sprintf("%014d", n)
	sum := 0
	for i := 0; i < 14; i++ {
		d := int(s[13-i] - '0')
		if i%2 == 0 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return s + strconv.Itoa((10-sum%10)%10)
}
