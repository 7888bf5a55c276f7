package auditbench

import (
	"testing"

	"github.com/tacline/tacline/imei"
)

func TestBenchEventsHaveValidIMEIs(t *testing.T) {
	for _, i := range []int{0, 1, 7, 999999, 1000000, 123456} {
		e := benchEvent(i)
		if _, err := imei.Parse(e.IMEIs[0]); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
}
