package store

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
)

// TestSQLiteReadersStayOpen: concurrent reads on a SQLite ledger reuse its
// read-only connections instead of closing the ones beyond database/sql's
// default of 2 idle connections and opening new ones (each a file open,
// the schema parsed and the statements prepared again).
func TestSQLiteReadersStayOpen(t *testing.T) {
	db, err := Open(context.Background(), Config{Driver: SQLite, DSN: filepath.Join(t.TempDir(), "ledger.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	for round := 0; round < 5; round++ {
		var wg sync.WaitGroup
		for g := 0; g < 2*sqliteReaders; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 20; i++ {
					if _, err := db.StationRequestCheckOf(ctx, "S1", "r", "SN", []byte("k")); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	st := db.r.Stats()
	if st.MaxIdleClosed != 0 || st.MaxLifetimeClosed != 0 || st.MaxIdleTimeClosed != 0 {
		t.Fatalf("read connections closed between reads: %+v", st)
	}
	if st.OpenConnections < 1 || st.OpenConnections > sqliteReaders {
		t.Fatalf("%d read connections open, want 1 to %d", st.OpenConnections, sqliteReaders)
	}
}
