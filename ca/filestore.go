package ca

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"

	"github.com/tacline/tacline/internal/atomicfile"
	"github.com/tacline/tacline/tacerr"
)

// FileStore is an IssuerStore in one JSON file, for tests and development.
// Every change rewrites the file atomically (temporary file, fsync, rename),
// so a crash leaves either the old or the new list. It is safe for
// concurrent use within one process; it does not lock against other
// processes.
type FileStore struct {
	path string
	mu   sync.Mutex
}

var _ IssuerStore = (*FileStore)(nil)

// NewFileStore uses path; the file need not exist yet.
func NewFileStore(path string) *FileStore { return &FileStore{path: path} }

type fileDoc struct {
	Issuers []IssuerRecord `json:"issuers"`
}

func (s *FileStore) load() (fileDoc, error) {
	var doc fileDoc
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return doc, nil
	}
	if err != nil {
		return doc, tacerr.Wrap(tacerr.Unavailable, err, "read issuer file %s", s.path)
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return doc, tacerr.Wrap(tacerr.InvalidConfig, err, "issuer file %s is not valid JSON; restore it from backup", s.path)
	}
	return doc, nil
}

func (s *FileStore) save(doc fileDoc) error {
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return tacerr.Wrap(tacerr.Internal, err, "encode issuers")
	}
	if err := atomicfile.Write(s.path, append(data, '\n'), 0o600); err != nil {
		return tacerr.Wrap(tacerr.Unavailable, err, "write issuer file %s", s.path)
	}
	return nil
}

// AddIssuer implements IssuerStore.
func (s *FileStore) AddIssuer(_ context.Context, r IssuerRecord) error {
	if r.KeyID == "" || r.CertPEM == "" {
		return tacerr.Field(tacerr.InvalidInput, "issuer", "an issuer record needs a key id and a certificate")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	doc, err := s.load()
	if err != nil {
		return err
	}
	for _, e := range doc.Issuers {
		if e.KeyID == r.KeyID {
			return tacerr.New(tacerr.Conflict, "issuer with key id %s already exists (label %q)", r.KeyID, e.Label)
		}
	}
	if r.Active {
		for i := range doc.Issuers {
			doc.Issuers[i].Active = false
		}
	}
	doc.Issuers = append(doc.Issuers, r)
	return s.save(doc)
}

// ListIssuers implements IssuerStore, in insertion order.
func (s *FileStore) ListIssuers(context.Context) ([]IssuerRecord, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	doc, err := s.load()
	return doc.Issuers, err
}

// Activate implements IssuerStore.
func (s *FileStore) Activate(_ context.Context, keyID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	doc, err := s.load()
	if err != nil {
		return err
	}
	found := false
	for i := range doc.Issuers {
		doc.Issuers[i].Active = doc.Issuers[i].KeyID == keyID
		found = found || doc.Issuers[i].Active
	}
	if !found {
		return tacerr.New(tacerr.NotFound, "no issuer with key id %s; `tacline ca list` shows the known ones", keyID)
	}
	if err := s.save(doc); err != nil {
		return fmt.Errorf("activate %s: %w", keyID, err)
	}
	return nil
}

// LabelInUse implements IssuerStore.
func (s *FileStore) LabelInUse(_ context.Context, label string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	doc, err := s.load()
	if err != nil {
		return "", err
	}
	for _, e := range doc.Issuers {
		if e.Label == label {
			return e.KeyID, nil
		}
	}
	return "", nil
}
