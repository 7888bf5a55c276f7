package catalog_test

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/tacline/tacline/catalog"
	"github.com/tacline/tacline/tacerr"
)

// FuzzParse checks that Parse never panics; that a failure is an
// invalid_input error carrying a non-empty ParseError and no records; and
// that a success yields valid records that Write and Parse reproduce.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"testdata/good.txt", "testdata/bad.txt"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(catalog.Header + "\n"))
	f.Add([]byte(catalog.Header + "\n00100100|B|M|LTE|07-Mar-2024|S|approval=eu:X:07-Mar-2024:;imeis_per_device=5\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := catalog.Parse(bytes.NewReader(data))
		if err != nil {
			var pe *catalog.ParseError
			if recs != nil || !tacerr.Is(err, tacerr.InvalidInput) || !errors.As(err, &pe) || len(pe.Errors) == 0 || pe.BadLines == 0 {
				t.Fatalf("Parse failure is malformed: %d records, error %v", len(recs), err)
			}
			for _, le := range pe.Errors {
				if le.Line < 1 || le.Reason == "" {
					t.Fatalf("problem without line or reason: %+v", le)
				}
			}
			return
		}
		seen := map[uint32]bool{}
		for _, r := range recs {
			if err := r.Validate(); err != nil {
				t.Fatalf("parsed record does not validate: %v\n%+v", err, r)
			}
			if seen[r.TAC] {
				t.Fatalf("TAC %s returned twice", r.TACString())
			}
			seen[r.TAC] = true
		}
		var buf bytes.Buffer
		if err := catalog.Write(&buf, recs); err != nil {
			t.Fatalf("Write of parsed records: %v", err)
		}
		back, err := catalog.Parse(strings.NewReader(buf.String()))
		if err != nil {
			t.Fatalf("Parse(Write(records)): %v\n%s", err, buf.String())
		}
		if len(back) != len(recs) || (len(recs) > 0 && !reflect.DeepEqual(back, recs)) {
			t.Fatalf("round trip changed the records:\n%+v\n%+v", back, recs)
		}
	})
}
