package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// files lists the names in dir.
func files(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestWriteFileIgnoresPlantedFiles: files planted where the old code wrote
// (PATH.tmp, world-readable, or a link to elsewhere) are neither used nor
// changed; the target is a 0600 regular file even when it was a link or a
// 0644 file before.
func TestWriteFileIgnoresPlantedFiles(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()
	path := filepath.Join(dir, "session")
	elsewhere := filepath.Join(dir, "elsewhere")
	if err := os.WriteFile(elsewhere, []byte("elsewhere"), 0o644); err != nil {
		t.Fatal(err)
	}
	check := func(name, want string, mode os.FileMode) {
		t.Helper()
		fi, err := os.Lstat(name)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(name)
		if string(b) != want || fi.Mode() != mode {
			t.Errorf("%s: %q %v, want %q %v", name, b, fi.Mode(), want, mode)
		}
	}
	for _, plant := range []string{"file", "symlink", "dangling symlink", "target is a link", "target is 0644"} {
		os.Remove(path)
		os.Remove(path + ".tmp")
		switch plant {
		case "file":
			if err := os.WriteFile(path+".tmp", []byte("planted"), 0o644); err != nil {
				t.Fatal(err)
			}
		case "symlink":
			if err := os.Symlink(elsewhere, path+".tmp"); err != nil {
				t.Fatal(err)
			}
		case "dangling symlink":
			if err := os.Symlink(filepath.Join(dir, "nowhere"), path+".tmp"); err != nil {
				t.Fatal(err)
			}
		case "target is a link":
			if err := os.Symlink(elsewhere, path); err != nil {
				t.Fatal(err)
			}
		case "target is 0644":
			if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := WriteFile(path, []byte("SECRET")); err != nil {
			t.Fatalf("%s: %v", plant, err)
		}
		check(path, "SECRET", 0o600)
		check(elsewhere, "elsewhere", 0o644)
		switch plant {
		case "file":
			check(path+".tmp", "planted", 0o644)
		case "dangling symlink":
			if _, err := os.Stat(filepath.Join(dir, "nowhere")); err == nil {
				t.Errorf("%s: the link's target was created", plant)
			}
		}
		for _, n := range files(t, dir) {
			if strings.Contains(n, ".tmp-") {
				t.Errorf("%s: temporary file %s left", plant, n)
			}
		}
	}
}

// TestWriteFileFailureLeavesNothing: a rename that fails (the target is a
// directory) leaves the target as it was and no temporary file.
func TestWriteFileFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "target")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(path, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("SECRET")); err == nil {
		t.Fatal("rename over a non-empty directory succeeded")
	}
	if names := files(t, dir); len(names) != 1 || names[0] != "target" {
		t.Errorf("left %q", names)
	}
	if err := WriteFile(filepath.Join(dir, "missing", "f"), []byte("x")); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}

// TestCommitKeepsFileOpen: after Commit the file is the target and still
// writable (the file store appends to its log); RemoveStale clears what a
// crash left, and only that.
func TestCommitKeepsFileOpen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "log")
	f, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := f.Stat(); err != nil || fi.Mode().Perm() != Mode {
		t.Fatalf("temporary file: %v %v", fi, err)
	}
	if _, err := f.WriteString("one"); err != nil {
		t.Fatal(err)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	f.Abort() // no-op after Commit
	if _, err := f.WriteString(" two"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if b, err := os.ReadFile(path); err != nil || string(b) != "one two" {
		t.Fatalf("%q %v", b, err)
	}

	crashed, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	crashed.Close() // never committed nor aborted
	other := filepath.Join(dir, ".logx.tmp-1")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := RemoveStale(path); err != nil {
		t.Fatal(err)
	}
	if names := files(t, dir); len(names) != 2 || names[0] != ".logx.tmp-1" || names[1] != "log" {
		t.Errorf("after RemoveStale: %q", names)
	}
}
