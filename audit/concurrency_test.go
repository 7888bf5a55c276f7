package audit

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// The child side of TestConcurrentProcessesNeverFork: when the test binary
// is re-executed with these variables set, it appends events as one more
// tacline replica would, and exits.
const (
	envChildDSN = "TACLINE_AUDIT_CHILD_DSN"
	envChildTag = "TACLINE_AUDIT_CHILD_TAG"
)

func TestMain(m *testing.M) {
	if dsn := os.Getenv(envChildDSN); dsn != "" {
		if err := childAppend(dsn, os.Getenv(envChildTag)); err != nil {
			fmt.Fprintln(os.Stderr, "audit child:", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const (
	childTxs      = 40
	childPerTx    = 3
	workerTxs     = 40
	workersPerLog = 3
)

func childAppend(dsn, tag string) error {
	ctx := context.Background()
	db, err := store.Open(ctx, store.Config{Driver: store.Postgres, DSN: dsn, MaxConns: 4})
	if err != nil {
		return err
	}
	defer db.Close()
	l, err := New(db, testConfig(), nil)
	if err != nil {
		return err
	}
	l.Attach()
	for i := range childTxs {
		if err := db.InTx(ctx, func(tx *store.Tx) error {
			for j := range childPerTx {
				tx.Emit(testEvent(tag, i*childPerTx+j))
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// TestConcurrentProcessesNeverFork runs two OS processes and, in this
// process, two Log replicas with several goroutines each, all appending to
// one PostgreSQL database while checkpoints are signed; the result must be
// one gap-free tree holding every event once, and every checkpoint signed on
// the way must be a prefix of it.
func TestConcurrentProcessesNeverFork(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := storetest.PostgresDSN(t)
	db, err := store.Open(ctx, store.Config{Driver: store.Postgres, DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	var children []*exec.Cmd
	var outs []*bytes.Buffer
	for i := range 2 {
		c := exec.Command(os.Args[0], "-test.run=^$")
		c.Env = append(os.Environ(), envChildDSN+"="+dsn, envChildTag+"=proc"+strconv.Itoa(i))
		var out bytes.Buffer
		c.Stdout, c.Stderr = &out, &out
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		children, outs = append(children, c), append(outs, &out)
	}

	key := newKey(t)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for r := range 2 {
		// each replica is its own Log on its own pool, as in two servers
		rdb, err := store.Open(ctx, store.Config{Driver: store.Postgres, DSN: dsn, MaxConns: 4})
		if err != nil {
			t.Fatal(err)
		}
		defer rdb.Close()
		l, err := New(rdb, testConfig(), key)
		if err != nil {
			t.Fatal(err)
		}
		l.Attach()
		for w := range workersPerLog {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tag := fmt.Sprintf("r%dw%d", r, w)
				for i := range workerTxs {
					err := rdb.InTx(ctx, func(tx *store.Tx) error {
						tx.Emit(testEvent(tag, i))
						return nil
					})
					if err != nil {
						errs <- err
						return
					}
					if i%10 == 9 {
						if _, err := l.Checkpoint(ctx); err != nil {
							errs <- fmt.Errorf("checkpoint: %w", err)
							return
						}
					}
				}
			}()
		}
	}
	wg.Wait()
	for i, c := range children {
		if err := c.Wait(); err != nil {
			t.Fatalf("child %d: %v\n%s", i, err, outs[i])
		}
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	want := int64(2*childTxs*childPerTx + 2*workersPerLog*workerTxs)
	checkHead(t, db, want)
	var distinct int64
	if err := storetest.Reader(db).Get(&distinct, `SELECT count(DISTINCT data) FROM audit_leaves`); err != nil {
		t.Fatal(err)
	}
	if distinct != want {
		t.Fatalf("%d distinct leaves, want %d", distinct, want)
	}
	// every checkpoint signed during the run is a prefix of the final tree
	l, err := New(db, testConfig(), key)
	if err != nil {
		t.Fatal(err)
	}
	final, err := l.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := storetest.Reader(db).Queryx(`SELECT note FROM audit_checkpoints ORDER BY size`)
	if err != nil {
		t.Fatal(err)
	}
	var notes []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		notes = append(notes, n)
	}
	rows.Close()
	if len(notes) < 2 {
		t.Fatalf("only %d checkpoints signed", len(notes))
	}
	var buf bytes.Buffer
	if _, err := Export(ctx, db, &buf, ExportOptions{ToSize: final.Size}); err != nil {
		t.Fatal(err)
	}
	for _, n := range notes {
		res := Verify(bytes.NewReader(buf.Bytes()), VerifyOptions{LogKey: l.Verifier().Key(), Previous: []byte(n)})
		if !res.Valid {
			t.Fatalf("checkpoint\n%s\nis not a prefix of the final log: %s", n, res.Reason)
		}
	}
}

func TestConcurrentGoroutinesSQLite(t *testing.T) {
	t.Parallel()
	db, _ := openLog(t, store.SQLite)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- emitErr(db, fmt.Sprint("w", w), 0, 50, 1+w)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	checkHead(t, db, 200)
}
