package imei_test

import (
	"testing"

	"github.com/tacline/tacline/imei"
)

// sink keeps results alive so the compiler cannot drop the work.
var sink imei.IMEI

func BenchmarkParseBytes(b *testing.B) {
	for _, bc := range []struct {
		name string
		in   string
	}{
		{"15digits", "490154203237518"},
		{"14digits", "49015420323751"},
		{"grouped", "49-015420-323751-8"},
		{"imeisv", "3520990017614823"},
	} {
		in := []byte(bc.in)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				m, err := imei.ParseBytes(in)
				if err != nil {
					b.Fatal(err)
				}
				sink = m
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		m, err := imei.Parse("490154203237518")
		if err != nil {
			b.Fatal(err)
		}
		sink = m
	}
}

func BenchmarkAppend(b *testing.B) {
	m, _ := imei.Parse("490154203237518")
	buf := make([]byte, 0, 32)
	b.ReportAllocs()
	for b.Loop() {
		buf = m.Append(buf[:0])
	}
}

func BenchmarkURN(b *testing.B) {
	m, _ := imei.Parse("490154203237518")
	b.ReportAllocs()
	for b.Loop() {
		_ = m.URN()
	}
}
