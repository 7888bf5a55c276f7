package reconcilebench

import (
	"context"
	"testing"
)

func TestBenchCountsMatch(t *testing.T) {
	res, err := Bench(context.Background(), BenchOptions{Lines: 1_200_000, Dir: t.TempDir(), Baseline: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res.CountsOK || res.Got.TACs != 2 || res.Got.MissingInRegister == 0 || res.Got.Malformed == 0 ||
		res.Got.DuplicatesInRegister == 0 || res.Got.UnknownToManufacturer == 0 || res.Got.StatusMismatch == 0 || res.Got.ForeignTACRows == 0 {
		t.Fatalf("bench result %+v", res)
	}
	if res.BaselineSeconds <= 0 || res.PeakRSSBytes <= 0 {
		t.Fatalf("baseline or RSS not measured: %+v", res)
	}
}
