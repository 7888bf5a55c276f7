// Package pemblock is the one reader of PEM text in tacline: certificate
// chains, trust anchors, CRLs, CSRs, keys and configuration files all go
// through Decode. Go's pem.Decode skips any text before a block (and a
// malformed block, looking for the next one); a careful PKI tool does not
// guess what such text meant. Decode accepts whitespace and PEM blocks only:
// text before, between or after the blocks, a block without its END line
// or with bad base64, and a block of a type the caller did not ask for are
// errors that name the caller's field, the block and where the fault starts
// (byte offset, from 0, and line, from 1), so the operator can find it
// (openssl writes "subject=" and "Bag Attributes" lines outside the blocks:
// they must be removed).
package pemblock

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/tacline/tacline/tacerr"
)

const (
	begin = "-----BEGIN "
	end   = "-----END "
)

var utf8BOM = []byte("\xef\xbb\xbf")

// Decode returns the PEM blocks of data in order. types, when given, are
// the block types accepted. Only whitespace may come before, between and
// after the blocks (and a UTF-8 byte-order mark at the very start), and
// data must hold at least one block. Errors have the given code
// (invalid_input when empty) and field.
func Decode(data []byte, code tacerr.Code, field string, types ...string) ([]*pem.Block, error) {
	if code == "" {
		code = tacerr.InvalidInput
	}
	var out []*pem.Block
	pos := 0
	if bytes.HasPrefix(data, utf8BOM) {
		pos = len(utf8BOM) // an editor's byte-order mark (Windows Notepad writes one) is not text
	}
	for {
		pos += len(data[pos:]) - len(bytes.TrimLeft(data[pos:], " \t\r\n"))
		if pos == len(data) {
			break
		}
		at := func() string { return where(data, pos) }
		rest := data[pos:]
		if !bytes.HasPrefix(rest, []byte(begin)) {
			switch {
			case len(out) == 0 && !bytes.Contains(rest, []byte(begin)):
				return nil, tacerr.Field(code, field, "is not PEM: it holds no -----BEGIN line")
			case len(out) == 0:
				return nil, tacerr.Field(code, field, "text before the first PEM block at %s: the input must be PEM only; remove the text outside the BEGIN/END lines", at())
			default:
				return nil, tacerr.Field(code, field, "trailing data after PEM block %d at %s: the input must be PEM only; remove the text outside the BEGIN/END lines", len(out), at())
			}
		}
		n := len(out) + 1
		e := bytes.Index(rest[len(begin):], []byte(end))
		if e < 0 {
			return nil, tacerr.Field(code, field, "malformed PEM: block %d at %s has no END line", n, at())
		}
		e += len(begin)
		if nl := bytes.IndexByte(rest[e:], '\n'); nl >= 0 {
			e += nl + 1 // with its newline: pem.Decode refuses an END line ending in a lone \r (CRLF)
		} else {
			e = len(rest)
		}
		seg := rest[:e]
		b, tail := pem.Decode(seg)
		// pem.Decode skips a malformed block and takes a later one: the
		// segment holds exactly one BEGIN line, and the block must be all of it.
		if b == nil || len(bytes.TrimSpace(tail)) != 0 || bytes.Count(seg, []byte(begin)) != 1 {
			return nil, tacerr.Field(code, field, "malformed PEM: block %d at %s does not decode (its BEGIN and END lines must name the same type, with base64 between them)", n, at())
		}
		if len(types) > 0 && !slices.Contains(types, b.Type) {
			return nil, tacerr.Field(code, field, "wrong PEM block type %q in block %d at %s; want %s", b.Type, n, at(), strings.Join(types, " or "))
		}
		out = append(out, b)
		pos += e
	}
	if len(out) == 0 {
		want := "PEM"
		if len(types) > 0 {
			want += " " + strings.Join(types, " or ")
		}
		return nil, tacerr.Field(code, field, "is empty: it holds no %s block", want)
	}
	return out, nil
}

// One is Decode for an input that holds exactly one block.
func One(data []byte, code tacerr.Code, field string, types ...string) (*pem.Block, error) {
	bs, err := Decode(data, code, field, types...)
	if err != nil {
		return nil, err
	}
	if len(bs) > 1 {
		if code == "" {
			code = tacerr.InvalidInput
		}
		return nil, tacerr.Field(code, field, "trailing data after the PEM block: %d blocks, give exactly one", len(bs))
	}
	return bs[0], nil
}

// Certificates decodes CERTIFICATE blocks (at least one) and parses each.
func Certificates(data []byte, code tacerr.Code, field string) ([]*x509.Certificate, error) {
	bs, err := Decode(data, code, field, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	if code == "" {
		code = tacerr.InvalidInput
	}
	out := make([]*x509.Certificate, len(bs))
	for i, b := range bs {
		if out[i], err = x509.ParseCertificate(b.Bytes); err != nil {
			return nil, tacerr.Field(code, field, "PEM block %d is not an X.509 certificate: %v", i+1, err)
		}
	}
	return out, nil
}

// ReadFile is Decode of the file at path; its errors name the file.
func ReadFile(path string, code tacerr.Code, field string, types ...string) ([]*pem.Block, error) {
	data, err := readFile(path, code, field)
	if err != nil {
		return nil, err
	}
	bs, err := Decode(data, code, field, types...)
	if err != nil {
		return nil, tacerr.Prefixed(path, err, code)
	}
	return bs, nil
}

// CertFile is Certificates of the file at path; its errors name the file.
func CertFile(path string, code tacerr.Code, field string) ([]*x509.Certificate, error) {
	data, err := readFile(path, code, field)
	if err != nil {
		return nil, err
	}
	certs, err := Certificates(data, code, field)
	if err != nil {
		return nil, tacerr.Prefixed(path, err, code)
	}
	return certs, nil
}

// CertPool is a pool of the certificates of the file at path (CA
// certificates, as for x509.CertPool.AppendCertsFromPEM, but by Decode's
// rules).
func CertPool(path string, code tacerr.Code, field string) (*x509.CertPool, error) {
	certs, err := CertFile(path, code, field)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// PrivateKeyTypes are the block types of a private key file: PKCS#8, SEC 1
// and PKCS#1, as crypto/tls reads them.
var PrivateKeyTypes = []string{"PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"}

// KeyPair is tls.LoadX509KeyPair by Decode's rules: certFile (errors on
// certField) holds the certificate and its intermediates, keyFile (errors
// on keyField, never quoting key material) one private key that is the
// certificate's.
func KeyPair(certFile, keyFile string, code tacerr.Code, certField, keyField string) (tls.Certificate, error) {
	if code == "" {
		code = tacerr.InvalidInput
	}
	certPEM, err := readFile(certFile, code, certField)
	if err != nil {
		return tls.Certificate{}, err
	}
	if _, err := Decode(certPEM, code, certField, "CERTIFICATE"); err != nil {
		return tls.Certificate{}, tacerr.Prefixed(certFile, err, code)
	}
	keyPEM, err := readFile(keyFile, code, keyField)
	if err != nil {
		return tls.Certificate{}, err
	}
	if _, err := One(keyPEM, code, keyField, PrivateKeyTypes...); err != nil {
		return tls.Certificate{}, tacerr.Prefixed(keyFile, err, code)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, tacerr.Field(code, keyField, "%s and %s are not a certificate and its key: %v", certFile, keyFile, err)
	}
	return pair, nil
}

func readFile(path string, code tacerr.Code, field string) ([]byte, error) {
	if code == "" {
		code = tacerr.InvalidInput
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, tacerr.Field(code, field, "cannot read %s: %v", path, err)
	}
	return data, nil
}

// DER reports whether data is to be read as binary DER rather than PEM
// text: it starts with a SEQUENCE tag, as every certificate, CRL and
// request does, or holds no BEGIN line. Inputs that may be either (CSRs,
// CRLs) take this as the one rule, so that PEM text with something before
// its first block is refused as PEM, by Decode, and garbage as DER.
func DER(data []byte) bool {
	return len(data) > 0 && data[0] == 0x30 || !bytes.Contains(data, []byte(begin))
}

// where names a byte offset of data: "line L (byte X)".
func where(data []byte, pos int) string {
	return fmt.Sprintf("line %d (byte %d)", 1+bytes.Count(data[:pos], []byte{'\n'}), pos)
}
