package catalog

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/tacline/tacline/tacerr"
)

// Write writes tacs as a catalogue file that [Parse] reads back to the same
// records. It validates every record first and writes nothing if one is
// invalid (the error names the record's index and field).
func Write(w io.Writer, tacs []TAC) error {
	for i, t := range tacs {
		if err := t.Validate(); err != nil {
			e, _ := tacerr.As(err)
			return tacerr.Field(tacerr.InvalidInput, fmt.Sprintf("[%d].%s", i, e.Field), "TAC %s: %s", t.TACString(), e.Message)
		}
	}
	bw := bufio.NewWriter(w)
	bw.WriteString(Header + "\n")
	for _, t := range tacs {
		bw.WriteString(FormatLine(t))
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// FormatLine returns the catalogue-file line of t, without line end. It does
// not validate t; see [Write].
func FormatLine(t TAC) string {
	var opt []string
	if t.ModelNumber != "" {
		opt = append(opt, "model_number="+t.ModelNumber)
	}
	if t.MarketingName != "" {
		opt = append(opt, "marketing_name="+t.MarketingName)
	}
	opt = append(opt, fmt.Sprintf("imeis_per_device=%d", t.IMEIsPerDevice))
	for _, a := range t.Approvals {
		until := ""
		if !a.ValidUntil.IsZero() {
			until = a.ValidUntil.Format(DateLayout)
		}
		opt = append(opt, fmt.Sprintf("approval=%s:%s:%s:%s", a.Market, a.Reference, a.ValidFrom.Format(DateLayout), until))
	}
	return strings.Join([]string{
		t.TACString(), t.Brand, t.ModelName, strings.Join(t.RadioInterfaces, ","),
		t.AllocationDate.Format(DateLayout), t.DeviceType, strings.Join(opt, ";"),
	}, "|")
}
