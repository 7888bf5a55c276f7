package policy

import (
	"bytes"
	"testing"
)

// TestHWTypeParsedOnce: a profile's hw_type is parsed into its DER once,
// not for every certificate, and each hw_type keeps its own (the
// HardwareModuleName of two profiles differs only there).
func TestHWTypeParsedOnce(t *testing.T) {
	a, b := DefaultProfile(), DefaultProfile()
	b.HWType = "2.25.329800735698586629295641978511506172918"
	sanA, err := a.subjectAltName(testDevice)
	if err != nil {
		t.Fatal(err)
	}
	sanB, err := b.subjectAltName(testDevice)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(sanA, sanB) {
		t.Fatal("two hw_types gave the same subjectAltName")
	}
	for _, p := range []Profile{a, b} {
		want, err := hwTypeOID(p.HWType)
		if err != nil {
			t.Fatal(err)
		}
		got, err := cachedHWType(p.HWType)
		if err != nil || !bytes.Equal(got.FullBytes, want.FullBytes) || !bytes.Equal(got.Bytes, want.Bytes) || got.Tag != want.Tag {
			t.Fatalf("cached %+v, %v; parsed %+v", got, err, want)
		}
		if n := testing.AllocsPerRun(50, func() { _, _ = cachedHWType(p.HWType) }); n != 0 {
			t.Fatalf("%s: %v allocations per certificate's hw_type, want 0", p.HWType, n)
		}
	}
	again, err := b.subjectAltName(testDevice)
	if err != nil || !bytes.Equal(again, sanB) {
		t.Fatalf("the second subjectAltName differs from the first: %v", err)
	}
}

// TestTemplateParsesHWTypeOnce: building a certificate's template parses
// no hw_type (Validate and the subjectAltName both read the kept one), and
// an invalid one is still refused every time.
func TestTemplateParsesHWTypeOnce(t *testing.T) {
	p := DefaultProfile()
	p.HWType = "2.25.329800735698586629295641978511506172919"
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(50, func() { _ = p.Validate() }); n != 0 {
		t.Fatalf("%v allocations per Validate of a valid profile, want 0", n)
	}
	p.HWType = "2.25.x"
	for range 2 {
		if err := p.Validate(); err == nil {
			t.Fatal("an invalid hw_type was accepted")
		}
	}
}
