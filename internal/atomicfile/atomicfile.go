// Package atomicfile writes small files durably and all at once: a reader
// sees the old contents or the new, never a part, and after Write returns
// the new contents survive a crash.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
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

// File is one file of a set that WriteSet replaces as a whole.
type File struct {
	Name string // base name in the set's directory
	Data []byte
	Perm os.FileMode
}

// CurrentLink is the symbolic link in a set's directory that names the
// set's current generation (a directory .set-* beside it).
const CurrentLink = ".current"

// setPrefix starts the name of a generation directory.
const setPrefix = ".set-"

// Test hook: a step of WriteSet reached.
var setStep = func(string) {}

// WriteSet replaces the files of a set in dir as a whole: a reader that
// opens them by their names in dir finds all the old ones or all the new
// ones, never a mixture, and so does a reader after a crash at any point
// (the files that two separate renames would replace, such as a key and
// its certificate, could otherwise be found one old and one new).
//
// Each name in dir is a symbolic link to CurrentLink/name, and CurrentLink
// a symbolic link to a generation directory that holds the files. A new
// generation is written and fsynced first; one rename of CurrentLink then
// switches every name at once; older generations are removed last (a
// crash leaves one, which the next WriteSet removes). A name that is still
// a regular file (written before sets, by Write or by hand) is first
// moved into a generation with the same contents and linked to it, so
// that replacing the files by links changes no contents. One set per
// directory; a name the new set lacks ends up a dangling link (absent to
// readers). Readers that read several files should read them from
// SetDir(dir), which cannot change under them.
func WriteSet(dir string, files []File) error {
	gen, err := writeGeneration(dir, files)
	if err != nil {
		return err
	}
	setStep("generation written")
	done := false
	defer func() {
		if !done {
			_ = os.RemoveAll(gen)
		}
	}()
	if err := linkNames(dir, files); err != nil {
		return err
	}
	setStep("names linked")
	if err := symlinkOver(dir, filepath.Base(gen), CurrentLink); err != nil {
		return err
	}
	done = true
	setStep("switched")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), setPrefix) && e.Name() != filepath.Base(gen) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// SetDir is the directory that holds the current files of the set in dir
// (its current generation); dir itself when it holds no set (files
// written before sets).
func SetDir(dir string) (string, error) {
	target, err := os.Readlink(filepath.Join(dir, CurrentLink))
	if errors.Is(err, fs.ErrNotExist) {
		return dir, nil
	}
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(target, setPrefix) || strings.ContainsRune(target, filepath.Separator) {
		return "", fmt.Errorf("%s points to %q, not to a generation of the set in %s", filepath.Join(dir, CurrentLink), target, dir)
	}
	return filepath.Join(dir, target), nil
}

// writeGeneration writes files into a new generation directory in dir,
// each file and the directory fsynced (Write).
func writeGeneration(dir string, files []File) (string, error) {
	gen, err := os.MkdirTemp(dir, setPrefix+"*")
	if err != nil {
		return "", &CreateError{Path: filepath.Join(dir, setPrefix+"*"), Err: err}
	}
	err = os.Chmod(gen, 0o755) // each file's own mode guards it
	for _, f := range files {
		if err != nil {
			break
		}
		err = Write(filepath.Join(gen, f.Name), f.Data, f.Perm) // fsyncs the file and gen
	}
	if err != nil {
		_ = os.RemoveAll(gen)
		return "", err
	}
	return gen, nil
}

// linkNames makes each name of files in dir a link to CurrentLink/name.
// Names that are regular files are first copied into a generation that
// CurrentLink then names, so that every name keeps its contents.
func linkNames(dir string, files []File) error {
	if _, err := os.Lstat(filepath.Join(dir, CurrentLink)); errors.Is(err, fs.ErrNotExist) {
		var old []File
		for _, f := range files {
			p := filepath.Join(dir, f.Name)
			st, err := os.Lstat(p)
			if err != nil || !st.Mode().IsRegular() {
				continue
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			old = append(old, File{Name: f.Name, Data: data, Perm: st.Mode().Perm()})
		}
		if len(old) > 0 {
			gen, err := writeGeneration(dir, old)
			if err != nil {
				return err
			}
			if err := symlinkOver(dir, filepath.Base(gen), CurrentLink); err != nil {
				_ = os.RemoveAll(gen)
				return err
			}
		}
	} else if err != nil {
		return err
	}
	for _, f := range files {
		want := filepath.Join(CurrentLink, f.Name)
		if got, err := os.Readlink(filepath.Join(dir, f.Name)); err == nil && got == want {
			continue
		}
		if err := symlinkOver(dir, want, f.Name); err != nil {
			return err
		}
		setStep("linked " + f.Name)
	}
	return nil
}

// symlinkOver makes dir/name a symbolic link to target, replacing what
// was there in one rename, and fsyncs dir.
func symlinkOver(dir, target, name string) error {
	tmp := filepath.Join(dir, fmt.Sprintf(".%s-link-%d", name, time.Now().UnixNano()))
	if err := os.Symlink(target, tmp); err != nil {
		return &CreateError{Path: filepath.Join(dir, name), Err: err}
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return SyncDir(dir)
}
