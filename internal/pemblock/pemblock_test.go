package pemblock

import (
	"bytes"
	"encoding/pem"
	"strconv"
	"strings"
	"testing"

	"github.com/tacline/tacline/tacerr"
)

func block(typ string, b ...byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}))
}

func TestDecode(t *testing.T) {
	t.Parallel()
	a, b := block("CERTIFICATE", 1, 2, 3), block("X509 CRL", 4)
	tests := []struct {
		name  string
		data  string
		types []string
		n     int    // blocks expected
		want  string // error text expected
	}{
		{name: "two blocks", data: a + b, n: 2},
		{name: "whitespace around and between", data: "\n \t" + a + "\r\n\n" + b + "\n\n", n: 2},
		{name: "CRLF line endings", data: strings.ReplaceAll(a+b, "\n", "\r\n"), n: 2},
		{name: "CRLF, no newline at the end", data: strings.TrimSuffix(strings.ReplaceAll(a+b, "\n", "\r\n"), "\r\n"), n: 2},
		{name: "types accepted", data: a + b, types: []string{"CERTIFICATE", "X509 CRL"}, n: 2},
		{name: "UTF-8 byte-order mark first", data: "\xef\xbb\xbf" + a + b, n: 2},
		{name: "byte-order mark after whitespace", data: "\n\xef\xbb\xbf" + a, want: "text before the first PEM block at line 2 (byte 1)"},
		{name: "byte-order mark between blocks", data: a + "\xef\xbb\xbf" + b, want: "trailing data after PEM block 1"},
		{name: "empty", data: " \n", want: "holds no PEM block"},
		{name: "no BEGIN line", data: "hello\n", want: "is not PEM: it holds no -----BEGIN line"},
		{name: "text before the first block", data: "subject=CN=Root\n" + a, want: "text before the first PEM block at line 1 (byte 0)"},
		{name: "text before, after a blank line", data: "\n  junk\n" + a, want: "text before the first PEM block at line 2 (byte 3)"},
		{name: "text between blocks", data: a + "Bag Attributes\n" + b, want: "trailing data after PEM block 1 at line 4 (byte " + itoa(len(a)) + ")"},
		{name: "text after the last block", data: a + b + "junk", want: "trailing data after PEM block 2 at line 7"},
		{name: "text on the END line", data: strings.TrimSuffix(a, "\n") + " junk\n", want: "malformed PEM: block 1 at line 1"},
		{name: "no END line", data: a[:strings.Index(a, "-----END")], want: "malformed PEM: block 1 at line 1 (byte 0) has no END line"},
		{name: "malformed block before a good one (pem.Decode skips it)", data: "-----BEGIN X-----\n!!\n-----END X-----\n" + a, want: "malformed PEM: block 1 at line 1"},
		{name: "BEGIN line without its block before a good one", data: "-----BEGIN X-----\n" + a, want: "malformed PEM: block 1 at line 1"},
		{name: "END type differs", data: "-----BEGIN A-----\nAQ==\n-----END B-----\n", want: "malformed PEM: block 1"},
		{name: "wrong type", data: a + b, types: []string{"CERTIFICATE"}, want: `wrong PEM block type "X509 CRL" in block 2 at line 4 (byte ` + itoa(len(a)) + "); want CERTIFICATE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bs, err := Decode([]byte(tc.data), "", "chain", tc.types...)
			if tc.want != "" {
				e, ok := tacerr.As(err)
				if !ok || e.Code != tacerr.InvalidInput || e.Field != "chain" || !strings.Contains(err.Error(), tc.want) || bs != nil {
					t.Fatalf("err = %v, want invalid_input (chain) %q", err, tc.want)
				}
				return
			}
			if err != nil || len(bs) != tc.n {
				t.Fatalf("%d blocks, %v", len(bs), err)
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestOne(t *testing.T) {
	t.Parallel()
	a := block("CERTIFICATE REQUEST", 1)
	if b, err := One([]byte(a), tacerr.CSRInvalid, "csr", "CERTIFICATE REQUEST"); err != nil || b.Bytes[0] != 1 {
		t.Fatalf("One = %v, %v", b, err)
	}
	_, err := One([]byte(a+a), tacerr.CSRInvalid, "csr")
	if !tacerr.Is(err, tacerr.CSRInvalid) || !strings.Contains(err.Error(), "trailing data after the PEM block: 2 blocks") {
		t.Fatalf("two blocks: %v", err)
	}
}

func TestCertificates(t *testing.T) {
	t.Parallel()
	_, err := Certificates([]byte(block("CERTIFICATE", 0x30, 0)), tacerr.InvalidConfig, "stepca.root")
	if e, ok := tacerr.As(err); !ok || e.Code != tacerr.InvalidConfig || e.Field != "stepca.root" || !strings.Contains(err.Error(), "PEM block 1 is not an X.509 certificate") {
		t.Fatalf("err = %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(block("CERTIFICATE", 1, 2)))
	f.Add([]byte("x\n" + block("A", 1)))
	f.Add([]byte("-----BEGIN A-----\n" + block("A", 1)))
	f.Fuzz(func(t *testing.T, data []byte) {
		bs, err := Decode(data, "", "f")
		if err != nil {
			return
		}
		// Accepted input is its blocks and whitespace only: it starts
		// and ends with one, and every BEGIN and END line is a block's.
		text := bytes.TrimSpace(data)
		if !bytes.HasPrefix(text, []byte(begin)) || !bytes.HasSuffix(text, []byte("-----")) ||
			bytes.Count(data, []byte(begin)) != len(bs) || bytes.Count(data, []byte(end)) != len(bs) {
			t.Fatalf("accepted %q as %d blocks", data, len(bs))
		}
	})
}
