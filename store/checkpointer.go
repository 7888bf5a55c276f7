package store

import (
	"database/sql"
	"sync"
	"time"
)

// The SQLite ledger's WAL is copied into the database file (a checkpoint)
// by a connection of its own, once a second, rather than by the writer at
// the commit that crosses SQLite's automatic threshold: that commit's
// batch, and every request queued behind it, waited for the copy of up to
// 40 MiB of pages and the database file's fsync. At an offered 500
// devices/s those waits were the slowest 1 % (docs/benchmarks.md, session
// 17). A PASSIVE checkpoint takes no lock the writer or the readers wait
// for; the writer starts the WAL again from its beginning at its next
// transaction once everything was copied, as before. The writer keeps an
// automatic threshold (checkpointBackstopBytes) in case the copy falls
// behind, so the WAL stays bounded whatever happens here.
const (
	checkpointEvery         = time.Second
	checkpointBackstopBytes = 256 << 20
)

type checkpointer struct {
	c      *sql.DB
	stop   chan struct{}
	wg     sync.WaitGroup
	closed sync.Once
	err    error
}

// startCheckpointer opens the checkpoint connection on the ledger at uri
// (the writer's settings: its VFS, synchronous=FULL) and starts its loop.
func startCheckpointer(uri string) (*checkpointer, error) {
	c, err := sql.Open("sqlite3", uri)
	if err != nil {
		return nil, err
	}
	c.SetMaxOpenConns(1)
	c.SetMaxIdleConns(1)
	c.SetConnMaxLifetime(0)
	k := &checkpointer{c: c, stop: make(chan struct{})}
	k.wg.Add(1)
	go k.loop()
	return k, nil
}

func (k *checkpointer) loop() {
	defer k.wg.Done()
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	for {
		select {
		case <-k.stop:
			return
		case <-t.C:
		}
		// A failure (the file gone, a read-only disk) is the writer's to
		// report at its next commit; the backstop keeps the WAL bounded.
		var busy, frames, done int
		_ = k.c.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &done)
	}
}

// close stops the loop and closes the connection; later calls (a DB
// closed twice) return the first's result.
func (k *checkpointer) close() error {
	k.closed.Do(func() {
		close(k.stop)
		k.wg.Wait()
		k.err = k.c.Close()
	})
	return k.err
}
