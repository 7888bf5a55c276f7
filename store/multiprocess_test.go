package store_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// Child mode: when the test binary is re-executed with these variables set
// it acts as one service replica reserving from a shared PostgreSQL ledger,
// prints every IMEI it received, and exits.
const (
	envChildDSN  = "TACLINE_STORE_CHILD_DSN"
	envChildName = "TACLINE_STORE_CHILD_NAME"
	envChildN    = "TACLINE_STORE_CHILD_N"
)

func TestMain(m *testing.M) {
	if dsn := os.Getenv(envChildDSN); dsn != "" {
		os.Exit(runChild(dsn))
	}
	os.Exit(m.Run())
}

func runChild(dsn string) int {
	ctx := context.Background()
	db, err := store.Open(ctx, store.Config{Driver: store.Postgres, DSN: dsn})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer db.Close()
	name := os.Getenv(envChildName)
	n, _ := strconv.Atoi(os.Getenv(envChildN))
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	var mu sync.Mutex
	var wg sync.WaitGroup
	failed := false
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				id := fmt.Sprintf("%s-%d", name, i)
				r, err := reserve(db, id, "A", 1+i%2)
				mu.Lock()
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					failed = true
				} else {
					for _, m := range r.Devices[0] {
						fmt.Fprintln(out, m.String(), id)
					}
				}
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	if failed {
		return 1
	}
	return 0
}

// Three OS processes reserving from one pool on one PostgreSQL database, as
// three service replicas would: no IMEI twice, no SNR unaccounted for.
func TestThreeProcessesShareOnePostgresPool(t *testing.T) {
	cfg := storetest.Config(t, store.Postgres)
	db, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	seed(t, db, 0, 999999)
	const perChild = 300
	outputs := make([]string, 3)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for c := 0; c < 3; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), envChildDSN+"="+cfg.DSN, envChildName+"=p"+strconv.Itoa(c), envChildN+"="+strconv.Itoa(perChild))
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				errs[c] = fmt.Errorf("child %d: %v: %s", c, err, stderr.String())
			}
			outputs[c] = string(out)
		}(c)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	owner := map[string]string{}
	total := 0
	for _, out := range outputs {
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(line)
			if len(f) != 2 {
				t.Fatalf("bad child line %q", line)
			}
			if prev, dup := owner[f[0]]; dup {
				t.Fatalf("IMEI %s handed to %s and %s", f[0], prev, f[1])
			}
			owner[f[0]] = f[1]
			total++
		}
	}
	wantIMEIs := 3 * (perChild/2*1 + perChild/2*2)
	if total != wantIMEIs {
		t.Fatalf("children received %d IMEIs, want %d", total, wantIMEIs)
	}
	rep := mustCheck(t, db)
	if rep.IMEIs != int64(total) {
		t.Fatalf("ledger holds %d IMEIs, processes received %d", rep.IMEIs, total)
	}
	p, err := db.Pool(context.Background(), "A")
	if err != nil {
		t.Fatal(err)
	}
	if int(p.NextSNR) != total {
		t.Fatalf("high-water mark %d, want %d (no SNR skipped)", p.NextSNR, total)
	}
}
