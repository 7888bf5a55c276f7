// Package atomicfile writes small files durably and all at once: a reader
// sees the old contents or the new, never a part, and after Write returns
// the new contents survive a crash.
package atomicfile

import (
	"io"
	"os"
	"path/filepath"
)

// Write replaces path with data: a temporary file in the same directory,
// fsync, rename over path, fsync of the directory.
func Write(path string, data []byte, perm os.FileMode) error {
	return WriteFunc(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteFunc replaces path with what fn writes, as Write does; if fn fails
// nothing is left behind and path is untouched. A failure to create the
// temporary file is a *CreateError.
func WriteFunc(path string, perm os.FileMode, fn func(io.Writer) error) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+"-*")
	if err != nil {
		return &CreateError{Path: path, Err: err}
	}
	defer os.Remove(tmp.Name())
	err = fn(tmp)
	if err == nil {
		err = tmp.Chmod(perm)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir makes the entries of dir durable: a rename or a new file in it
// survives a crash once SyncDir returns.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// CreateError is a failure to create the file next to Path (a missing or
// read-only directory).
type CreateError struct {
	Path string
	Err  error
}

func (e *CreateError) Error() string { return "create " + e.Path + ": " + e.Err.Error() }
func (e *CreateError) Unwrap() error { return e.Err }
