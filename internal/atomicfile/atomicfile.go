package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Mode is the permission of the files Create makes (before the umask).
const Mode = 0o600

// File is a temporary file that will replace its target.
type File struct {
	*os.File
	target    string
	committed bool
	closed    bool
}

// tempPrefix is the start of the names of target's temporary files.
func tempPrefix(target string) string { return "." + filepath.Base(target) + ".tmp-" }

// Create makes a new, empty temporary file with mode 0600 in the directory
// of target, to be written and then renamed over target by Commit.
func Create(target string) (*File, error) {
	f, err := os.CreateTemp(filepath.Dir(target), tempPrefix(target)+"*")
	if err != nil {
		return nil, fmt.Errorf("atomicfile: %w", err)
	}
	// CreateTemp already asks for 0600; say so explicitly, whatever it does
	// in the future.
	if err := f.Chmod(Mode); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("atomicfile: %w", err)
	}
	return &File{File: f, target: target}, nil
}

// Target is the path the file replaces.
func (f *File) Target() string { return f.target }

// Commit renames the temporary file over the target; the file stays open
// (it is now the target). It does not fsync: call Sync before, and SyncDir
// after, for durability. After a failed Commit the caller calls Abort.
func (f *File) Commit() error {
	if f.committed {
		return errors.New("atomicfile: already committed")
	}
	if err := os.Rename(f.Name(), f.target); err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	f.committed = true
	return nil
}

// Abort closes and removes the temporary file, unless Commit succeeded
// (then it does nothing, and the caller closes the file when done with
// it). It is safe to defer, and to call more than once.
func (f *File) Abort() {
	if f.committed || f.closed {
		return
	}
	f.closed = true
	f.File.Close()
	os.Remove(f.Name())
}

// SyncDir fsyncs a directory, so that a rename in it survives a power
// failure.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// WriteFile replaces path with data, mode 0600: through a fresh temporary
// file in the same directory, written, fsynced, renamed over path and
// closed, and then the directory fsynced (a failure of that last step is
// not reported: the new file is in place). On failure path is unchanged
// and the temporary file is gone.
func WriteFile(path string, data []byte) error {
	f, err := Create(path)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	if err := f.Commit(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	_ = SyncDir(filepath.Dir(path))
	return nil
}

// RemoveStale removes the temporary files that Create made for target and
// that were never committed or aborted (the process died in between). Call
// it only when no one else may be writing target at the same time (under
// the lock that guards target, say), or it removes their file in flight.
func RemoveStale(target string) error {
	dir := filepath.Dir(target)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	prefix := tempPrefix(target)
	var errs []error
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
