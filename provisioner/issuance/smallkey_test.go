package issuance

import (
	"bytes"
	"flag"
	"os"
	"testing"
)

var updateSmallKey = flag.Bool("update-smallkey", false, "rewrite p256small.bin")

// TestSmallKeyTableFile recomputes the shipped table with point additions
// and requires the file to hold exactly that (rewrite it with
// go test ./provisioner/issuance -run TestSmallKeyTableFile -update-smallkey).
func TestSmallKeyTableFile(t *testing.T) {
	want := computeP256Small()
	if *updateSmallKey {
		if err := os.WriteFile("p256small.bin", want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if len(want) != 8<<smallKeyBits {
		t.Fatalf("computed table has %d bytes, want %d", len(want), 8<<smallKeyBits)
	}
	if !bytes.Equal(p256SmallFile, want) {
		t.Fatal("p256small.bin differs from the table of x(d*G): regenerate it with -update-smallkey")
	}
}
