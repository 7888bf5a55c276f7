package factory

import (
	"bytes"
	"crypto/tls"
	"os"
	"path/filepath"
	"sort"
	"unicode/utf8"

	"github.com/tacline/tacline/tacerr"
)

// File names of a station credentials directory:
//
//	DIR/ca-chain.pem             device roots (+ intermediates): verifies returned certificates
//	DIR/server-ca.pem            verifies the server's TLS certificate
//	DIR/<station-id>/cert.pem    the station's client certificate
//	DIR/<station-id>/key.pem     its private key
//	DIR/<station-id>/product     the product the station provisions (one line)
//	DIR/<station-id>/pool        optional: an explicit pool instead (one line)
const (
	CredsRootsFile    = "ca-chain.pem"
	CredsServerCAFile = "server-ca.pem"
	CredsCertFile     = "cert.pem"
	CredsKeyFile      = "key.pem"
	CredsProductFile  = "product"
	CredsPoolFile     = "pool"
)

// StationCreds is one station's identity and what it provisions.
type StationCreds struct {
	ID       string // station id (informative: the certificate decides who the server sees)
	CertFile string
	KeyFile  string
	Product  string // the product to provision; the server picks the pool
	Pool     string // or an explicit pool
	// GetClientCertificate, when set, replaces CertFile/KeyFile with a
	// certificate renewed while the station runs (ClientConfig).
	GetClientCertificate func(*tls.CertificateRequestInfo) (*tls.Certificate, error)
}

// Creds is a credentials directory: the stations and the trust files.
type Creds struct {
	Stations     []StationCreds // sorted by ID
	RootsFile    string
	ServerCAFile string
}

// LoadCreds reads the credentials directory dir (layout above) and keeps
// the first n stations in ID order (n <= 0: all). Only directories with a
// cert.pem and a product or pool file are stations; others (role
// credentials such as person-operator/) are skipped. Errors name the file at
// fault.
func LoadCreds(dir string, n int) (*Creds, error) {
	if dir == "" {
		return nil, tacerr.Field(tacerr.InvalidInput, "creds", "the credentials directory is required")
	}
	c := &Creds{RootsFile: filepath.Join(dir, CredsRootsFile), ServerCAFile: filepath.Join(dir, CredsServerCAFile)}
	for _, f := range []string{c.RootsFile, c.ServerCAFile} {
		if _, err := os.Stat(f); err != nil {
			return nil, tacerr.Wrap(tacerr.InvalidInput, err, "credentials directory %s: %s is missing", dir, filepath.Base(f))
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.InvalidInput, err, "read the credentials directory %s", dir)
	}
	var ids []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		sd := filepath.Join(dir, e.Name())
		if !exists(filepath.Join(sd, CredsCertFile)) {
			continue
		}
		// Role credentials (operator, auditor...) and stations enrolled
		// without a product have no product or pool file: not for the line.
		if !exists(filepath.Join(sd, CredsProductFile)) && !exists(filepath.Join(sd, CredsPoolFile)) {
			continue
		}
		ids = append(ids, e.Name())
	}
	sort.Strings(ids)
	if len(ids) == 0 {
		return nil, tacerr.Field(tacerr.InvalidInput, "creds", "%s has no station directory (<station-id>/%s with a %s or %s file); enroll stations with --product", dir, CredsCertFile, CredsProductFile, CredsPoolFile)
	}
	if n > len(ids) {
		return nil, tacerr.Field(tacerr.InvalidInput, "stations", "%d stations asked for, but %s has only %d (with a product)", n, dir, len(ids))
	}
	if n > 0 {
		ids = ids[:n]
	}
	for _, id := range ids {
		sd := filepath.Join(dir, id)
		st := StationCreds{ID: id, CertFile: filepath.Join(sd, CredsCertFile), KeyFile: filepath.Join(sd, CredsKeyFile)}
		if st.Product, err = readNameFile(filepath.Join(sd, CredsProductFile)); err != nil {
			return nil, err
		}
		if st.Pool, err = readNameFile(filepath.Join(sd, CredsPoolFile)); err != nil {
			return nil, err
		}
		c.Stations = append(c.Stations, st)
	}
	return c, nil
}

// readNameFile reads a one-line name file; a missing file gives "" (the
// caller requires a product or a pool).
func readNameFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return "", nil
	}
	if err != nil {
		return "", tacerr.Wrap(tacerr.InvalidInput, err, "read %s", path)
	}
	name, err := ParseNameFile(data)
	if err != nil {
		return "", tacerr.Field(tacerr.InvalidInput, filepath.Base(path), "%s: %v", path, err)
	}
	return name, nil
}

// ParseNameFile parses a product or pool file: one name on one line
// (surrounding blanks and a final newline allowed), printable UTF-8, at
// most 128 bytes.
func ParseNameFile(data []byte) (string, error) {
	s := bytes.TrimSpace(data)
	switch {
	case len(s) == 0:
		return "", tacerr.New(tacerr.InvalidInput, "is empty; write the name on one line")
	case len(s) > 128:
		return "", tacerr.New(tacerr.InvalidInput, "is %d bytes long; a name has at most 128", len(s))
	case !utf8.Valid(s):
		return "", tacerr.New(tacerr.InvalidInput, "is not UTF-8 text")
	}
	for i, r := range string(s) {
		if r < 0x20 || r == 0x7f {
			if r == '\n' || r == '\r' {
				return "", tacerr.New(tacerr.InvalidInput, "has more than one line; write one name")
			}
			return "", tacerr.New(tacerr.InvalidInput, "has a control character at byte %d", i+1)
		}
	}
	return string(s), nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
