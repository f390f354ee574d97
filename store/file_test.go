package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/ticketfmt"
)

var testStoreKey = bytes.Repeat([]byte{0x5a}, KeySize)

// logBuffer collects log output for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func openFile(t testing.TB, path string, cfg FileConfig) *File {
	t.Helper()
	f, err := NewFile(path, testStoreKey, cfg)
	if err != nil {
		t.Fatalf("NewFile: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func mustPut(t testing.TB, s Store, k, v string, ttl time.Duration) {
	t.Helper()
	if err := s.Put(context.Background(), []byte(k), []byte(v), ttl); err != nil {
		t.Fatalf("Put %q: %v", k, err)
	}
}

func mustGet(t testing.TB, s Store, k, want string) {
	t.Helper()
	v, err := s.Get(context.Background(), []byte(k))
	if err != nil {
		t.Fatalf("Get %q: %v", k, err)
	}
	if string(v) != want {
		t.Fatalf("Get %q = %q, want %q", k, v, want)
	}
}

func mustMiss(t testing.TB, s Store, k string) {
	t.Helper()
	if v, err := s.Get(context.Background(), []byte(k)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get %q = %q, %v; want ErrNotFound", k, v, err)
	}
}

func TestFileRoundTripAndRestart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sessions")
	f := openFile(t, path, FileConfig{})
	mustMiss(t, f, "sid/one")
	mustPut(t, f, "sid/one", "master-secret-one", time.Hour)
	mustPut(t, f, "sid/two", "master-secret-two", time.Hour)
	mustPut(t, f, "csh/three", "client-state-three", time.Hour)
	mustPut(t, f, "sid/two", "master-secret-two-b", time.Hour)
	if err := f.Delete(context.Background(), []byte("csh/three")); err != nil {
		t.Fatal(err)
	}
	if err := f.Delete(context.Background(), []byte("absent")); err != nil {
		t.Fatalf("Delete of an absent key: %v", err)
	}
	mustGet(t, f, "sid/one", "master-secret-one")
	mustGet(t, f, "sid/two", "master-secret-two-b")
	mustMiss(t, f, "csh/three")
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	if err := f.Put(context.Background(), []byte("k"), []byte("v"), time.Hour); !errors.Is(err, ErrClosed) {
		t.Errorf("Put after Close: %v", err)
	}

	// Nothing readable on disk: neither keys nor values.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"sid/", "csh/", "master-secret", "client-state", "one", "two"} {
		if bytes.Contains(data, []byte(s)) {
			t.Errorf("the file contains %q in the clear", s)
		}
	}
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, %v", info.Mode(), err)
	}

	g := openFile(t, path, FileConfig{})
	defer g.Close()
	mustGet(t, g, "sid/one", "master-secret-one")
	mustGet(t, g, "sid/two", "master-secret-two-b")
	mustMiss(t, g, "csh/three")
	if st := g.Stats(); st.Loaded != 2 || st.Damaged != 0 || st.TornBytes != 0 {
		t.Errorf("stats after reload %+v", st)
	}
}

func TestFileWrongKeyAndLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	f := openFile(t, path, FileConfig{})
	mustPut(t, f, "k", "v", time.Hour)
	if _, err := NewFile(path, testStoreKey, FileConfig{}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second open of a file in use: %v", err)
	}
	f.Close()
	other := bytes.Repeat([]byte{1}, KeySize)
	if _, err := NewFile(path, other, FileConfig{}); err == nil || !strings.Contains(err.Error(), "wrong store key") {
		t.Fatalf("open with another key: %v", err)
	}
	if _, err := NewFile(path, other[:16], FileConfig{}); err == nil {
		t.Fatal("16-byte key accepted")
	}
	// The failed opens released the lock and left the file alone.
	g := openFile(t, path, FileConfig{})
	mustGet(t, g, "k", "v")
	g.Close()
	if err := os.WriteFile(filepath.Join(t.TempDir(), "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(t.TempDir(), "junk")
	if err := os.WriteFile(junk, []byte("not a store file at all, no no no no no no no no"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewFile(junk, testStoreKey, FileConfig{}); err == nil || !strings.Contains(err.Error(), "magic") {
		t.Fatalf("open of a foreign file: %v", err)
	}
}

func TestFileExpiry(t *testing.T) {
	clock := newFakeClock()
	path := filepath.Join(t.TempDir(), "s")
	f := openFile(t, path, FileConfig{Now: clock.Now})
	mustPut(t, f, "short", "a", time.Minute)
	mustPut(t, f, "long", "b", time.Hour)
	clock.Advance(time.Minute - time.Nanosecond)
	mustGet(t, f, "short", "a")
	clock.Advance(time.Nanosecond)
	mustMiss(t, f, "short")
	mustGet(t, f, "long", "b")
	f.Close()

	// Expired records are not loaded; live ones keep their expiry.
	g := openFile(t, path, FileConfig{Now: clock.Now})
	if st := g.Stats(); st.Loaded != 1 {
		t.Errorf("loaded %d records, want 1", st.Loaded)
	}
	mustGet(t, g, "long", "b")
	clock.Advance(59 * time.Minute)
	mustMiss(t, g, "long")
	g.Close()
	h := openFile(t, path, FileConfig{Now: clock.Now})
	defer h.Close()
	if h.Len() != 0 {
		t.Errorf("%d records loaded after all expired", h.Len())
	}
	if err := h.Put(context.Background(), []byte("k"), []byte("v"), 0); !errors.Is(err, ErrInvalidTTL) {
		t.Errorf("ttl 0: %v", err)
	}
}

// writeRecords creates a store at path with the records "k0".."k{n-1}" and
// returns the log's size before each record was written.
func writeTestRecords(t *testing.T, path string, n int) (offsets []int64) {
	t.Helper()
	f := openFile(t, path, FileConfig{NoSync: true})
	for i := range n {
		offsets = append(offsets, f.Stats().FileBytes)
		mustPut(t, f, fmt.Sprintf("k%d", i), fmt.Sprintf("value-%d-%s", i, strings.Repeat("x", i)), time.Hour)
	}
	offsets = append(offsets, f.Stats().FileBytes)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return offsets
}

// TestFileTornTail cuts the log at every offset inside its last record, as
// a crash in the middle of a write would: the store opens, has every record
// but the last, cuts the torn bytes off, and works on.
func TestFileTornTail(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	offsets := writeTestRecords(t, src, 4)
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	last := offsets[3]
	if int64(len(data)) != offsets[4] {
		t.Fatalf("file %d bytes, want %d", len(data), offsets[4])
	}
	for cut := last; cut < int64(len(data)); cut++ {
		path := filepath.Join(dir, fmt.Sprintf("cut%d", cut))
		if err := os.WriteFile(path, data[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		var logs logBuffer
		f, err := NewFile(path, testStoreKey, FileConfig{NoSync: true, Logger: logs.logger()})
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		for i := range 3 {
			mustGet(t, f, fmt.Sprintf("k%d", i), fmt.Sprintf("value-%d-%s", i, strings.Repeat("x", i)))
		}
		mustMiss(t, f, "k3")
		st := f.Stats()
		if st.TornBytes != cut-last || st.Damaged != 0 || st.FileBytes != last {
			t.Fatalf("cut at %d: stats %+v", cut, st)
		}
		if cut > last && !strings.Contains(logs.String(), "torn") {
			t.Errorf("cut at %d: nothing logged", cut)
		}
		// It goes on: a new record after the cut survives a restart.
		mustPut(t, f, "after", "crash", time.Hour)
		f.Close()
		g := openFile(t, path, FileConfig{NoSync: true})
		mustGet(t, g, "after", "crash")
		mustGet(t, g, "k2", "value-2-xx")
		if st := g.Stats(); st.TornBytes != 0 || st.Damaged != 0 || g.Len() != 4 {
			t.Fatalf("cut at %d, reopened: stats %+v, %d records", cut, st, g.Len())
		}
		g.Close()
		os.Remove(path)
	}
}

// TestFileTamper flips each byte of the log in turn: the header's bytes
// make the open fail (the operator's key cannot be told from a damaged
// header); a record's bytes make that record, and only it, disappear.
// Nothing is ever injected.
func TestFileTamper(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	const n = 4
	offsets := writeTestRecords(t, src, n)
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	recordAt := func(pos int64) int {
		for i := range n {
			if pos >= offsets[i] && pos < offsets[i+1] {
				return i
			}
		}
		return -1
	}
	for pos := range int64(len(data)) {
		tampered := bytes.Clone(data)
		tampered[pos] ^= 0x01
		path := filepath.Join(dir, fmt.Sprintf("t%d", pos))
		if err := os.WriteFile(path, tampered, 0o600); err != nil {
			t.Fatal(err)
		}
		var logs logBuffer
		f, err := NewFile(path, testStoreKey, FileConfig{NoSync: true, Logger: logs.logger()})
		if pos < int64(fileHeaderSize) {
			if err == nil {
				f.Close()
				t.Fatalf("byte %d of the header flipped: opened", pos)
			}
			os.Remove(path)
			continue
		}
		if err != nil {
			t.Fatalf("byte %d flipped: %v", pos, err)
		}
		hit := recordAt(pos)
		for i := range n {
			k := fmt.Sprintf("k%d", i)
			if i == hit {
				mustMiss(t, f, k)
			} else {
				mustGet(t, f, k, fmt.Sprintf("value-%d-%s", i, strings.Repeat("x", i)))
			}
		}
		if f.Len() != n-1 {
			t.Fatalf("byte %d flipped: %d records", pos, f.Len())
		}
		if logs.String() == "" {
			t.Errorf("byte %d flipped: nothing logged", pos)
		}
		f.Close()
		// The damage was cleaned up: a second open finds none.
		g := openFile(t, path, FileConfig{NoSync: true})
		if st := g.Stats(); st.Damaged != 0 || st.TornBytes != 0 || g.Len() != n-1 {
			t.Fatalf("byte %d flipped, reopened: %+v", pos, st)
		}
		g.Close()
		os.Remove(path)
	}
}

// TestFileReplayAndSwap: records copied to another place of the log (an old
// value appended again, one record's body under another's frame) are
// rejected.
func TestFileReplayAndSwap(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s")
	f := openFile(t, path, FileConfig{NoSync: true})
	mustPut(t, f, "k", "old", time.Hour)
	off := f.Stats().FileBytes
	mustPut(t, f, "k", "new", time.Hour)
	mustPut(t, f, "other", "x", time.Hour)
	f.Close()
	data, _ := os.ReadFile(path)
	oldRec := data[fileHeaderSize:off]

	// Appending the old record again does not bring "old" back.
	if err := os.WriteFile(path, append(bytes.Clone(data), oldRec...), 0o600); err != nil {
		t.Fatal(err)
	}
	g := openFile(t, path, FileConfig{NoSync: true})
	mustGet(t, g, "k", "new")
	mustGet(t, g, "other", "x")
	g.Close()

	// A record from another file (same key, other salt) is rejected.
	other := filepath.Join(dir, "other")
	h := openFile(t, other, FileConfig{NoSync: true})
	mustPut(t, h, "injected", "evil", time.Hour)
	hoff := int64(fileHeaderSize)
	h.Close()
	odata, _ := os.ReadFile(other)
	data, _ = os.ReadFile(path)
	// Give it this file's sync marker so it is even considered.
	foreign := bytes.Clone(odata[hoff:])
	copy(foreign, data[len(fileMagic)+fileSaltSize:len(fileMagic)+fileSaltSize+fileSyncSize])
	if err := os.WriteFile(path, append(data, foreign...), 0o600); err != nil {
		t.Fatal(err)
	}
	g = openFile(t, path, FileConfig{NoSync: true})
	defer g.Close()
	mustMiss(t, g, "injected")
	mustGet(t, g, "k", "new")
}

func TestFileCompaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	clock := newFakeClock()
	f := openFile(t, path, FileConfig{NoSync: true, CompactMinBytes: 4096, Now: clock.Now})
	value := strings.Repeat("v", 100)
	for i := range 500 {
		mustPut(t, f, fmt.Sprintf("k%d", i%10), fmt.Sprint(value, i), time.Hour)
	}
	waitCompactions(t, f)
	if st := f.Stats(); st.Compactions == 0 {
		t.Fatalf("no compaction: %+v", st)
	}
	if err := f.Compact(); err != nil {
		t.Fatal(err)
	}
	if st := f.Stats(); st.FileBytes != int64(fileHeaderSize+10*(FileRecordOverhead+103)) {
		t.Errorf("log of %d bytes after compaction, want %d", st.FileBytes, fileHeaderSize+10*(FileRecordOverhead+103))
	}
	for i := range 10 {
		mustGet(t, f, fmt.Sprintf("k%d", i), fmt.Sprint(value, 490+i))
	}
	// Expired records are dropped by compaction.
	mustPut(t, f, "brief", "x", time.Second)
	if err := f.PutMeta(context.Background(), "meta", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Second)
	if err := f.Compact(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	g := openFile(t, path, FileConfig{NoSync: true, Now: clock.Now})
	defer g.Close()
	if g.Len() != 10 {
		t.Errorf("%d records after reopen, want 10", g.Len())
	}
	for i := range 10 {
		mustGet(t, g, fmt.Sprintf("k%d", i), fmt.Sprint(value, 490+i))
	}
	if v, ok := g.GetMeta("meta"); !ok || string(v) != "kept" {
		t.Errorf("meta after compaction: %q %v", v, ok)
	}
	if names, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*.tmp-*")); len(names) > 0 {
		t.Errorf("temporary files left: %q", names)
	}
}

// TestFileCompactionIgnoresPlantedFiles: a link planted at PATH.compact
// (where compaction once wrote, truncating whatever it pointed to) is not
// followed, and the temporary file a crash left in the middle of a
// compaction is removed when the store is opened again.
func TestFileCompactionIgnoresPlantedFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s")
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, path+".compact"); err != nil {
		t.Fatal(err)
	}
	f := openFile(t, path, FileConfig{NoSync: true})
	mustPut(t, f, "k", "v", time.Hour)
	if err := f.Compact(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(victim); err != nil || string(b) != "keep me" {
		t.Errorf("the link's target: %q %v", b, err)
	}
	if fi, err := os.Lstat(path); err != nil || fi.Mode() != 0o600 {
		t.Errorf("log after compaction: %v %v", fi, err)
	}
	f.Close()
	crashed := filepath.Join(dir, ".s.tmp-123456")
	if err := os.WriteFile(crashed, []byte("half a compaction"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := openFile(t, path, FileConfig{NoSync: true})
	defer g.Close()
	mustGet(t, g, "k", "v")
	for _, name := range []string{crashed, path + ".compact"} {
		if _, err := os.Lstat(name); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after open: %v", name, err)
		}
	}
	if b, err := os.ReadFile(victim); err != nil || string(b) != "keep me" {
		t.Errorf("the link's target after reopening: %q %v", b, err)
	}
}

func waitCompactions(t *testing.T, f *File) {
	t.Helper()
	for range 500 {
		f.wmu.Lock()
		busy := f.compacting
		f.wmu.Unlock()
		if !busy {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatal("compaction did not finish")
}

// TestFileConcurrent runs writers, readers and compactions at once, then
// checks that a reopened store has each key's last value.
func TestFileConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	f := openFile(t, path, FileConfig{CompactMinBytes: 8192})
	ctx := context.Background()
	const writers, perWriter = 6, 150
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				k := []byte(fmt.Sprintf("w%d-k%d", w, i%7))
				if err := f.Put(ctx, k, []byte(fmt.Sprintf("%d", i)), time.Hour); err != nil {
					t.Error(err)
					return
				}
				if i%5 == 0 {
					if err := f.Delete(ctx, []byte(fmt.Sprintf("w%d-gone", w))); err != nil {
						t.Error(err)
						return
					}
				}
				if _, err := f.Get(ctx, k); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 5 {
			if err := f.Compact(); err != nil {
				t.Error(err)
			}
			time.Sleep(time.Millisecond)
		}
	})
	wg.Wait()
	waitCompactions(t, f)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	g := openFile(t, path, FileConfig{})
	defer g.Close()
	for w := range writers {
		for j := range 7 {
			last := perWriter - 1 - ((perWriter - 1 - j) % 7)
			mustGet(t, g, fmt.Sprintf("w%d-k%d", w, j), fmt.Sprint(last))
		}
	}
	if g.Len() != writers*7 {
		t.Errorf("%d records, want %d", g.Len(), writers*7)
	}
}

// TestFileWriteFailure: a write that fails (here: the log turned read-only,
// as a full disk would fail it) returns an error and changes nothing; the
// store keeps serving what it has and works again once the disk does.
func TestFileWriteFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	var logs logBuffer
	f, err := NewFile(path, testStoreKey, FileConfig{Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, f, "before", "1", time.Hour)
	ro, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	f.wmu.Lock()
	good := f.f
	f.f = ro
	f.wmu.Unlock()
	start := time.Now()
	if err := f.Put(context.Background(), []byte("during"), []byte("2"), time.Hour); err == nil {
		t.Fatal("Put on a failing disk succeeded")
	}
	if time.Since(start) > time.Second {
		t.Error("failing Put took over a second")
	}
	mustMiss(t, f, "during")
	mustGet(t, f, "before", "1")
	if !strings.Contains(logs.String(), "write failed") {
		t.Error("the failure was not logged")
	}
	if f.Stats().WriteErrors != 1 {
		t.Errorf("stats %+v", f.Stats())
	}
	f.wmu.Lock()
	f.f = good
	f.wmu.Unlock()
	ro.Close()
	mustPut(t, f, "after", "3", time.Hour)
	f.Close()
	g := openFile(t, path, FileConfig{})
	defer g.Close()
	mustGet(t, g, "before", "1")
	mustGet(t, g, "after", "3")
	mustMiss(t, g, "during")
	if st := g.Stats(); st.Damaged != 0 || st.TornBytes != 0 {
		t.Errorf("damage after a failed write: %+v", st)
	}
}

// TestFileHungDisk: a Put whose write does not finish returns the context's
// error when it ends, and too many such writes fail at once.
func TestFileHungDisk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	f := openFile(t, path, FileConfig{MaxPendingWrites: 2})
	f.wmu.Lock() // the disk hangs
	for i := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		err := f.Put(ctx, []byte("k"), []byte("v"), time.Hour)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Put %d on a hung disk: %v", i, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	start := time.Now()
	err := f.Put(ctx, []byte("k"), []byte("v"), time.Hour)
	cancel()
	if !errors.Is(err, errBusy) || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("Put with the writers busy: %v after %v", err, time.Since(start))
	}
	// Reads do not wait for the disk.
	mustMiss(t, f, "other")
	f.wmu.Unlock()
	for range 100 {
		if len(f.sem) == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mustPut(t, f, "k2", "v2", time.Hour)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	g := openFile(t, path, FileConfig{})
	defer g.Close()
	if err := g.Put(ctx, []byte("x"), []byte("y"), time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a done context: %v", err)
	}
	if _, err := g.Get(ctx, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a done context: %v", err)
	}
}

func TestFileBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	f := openFile(t, path, FileConfig{Capacity: 10, NoSync: true})
	for i := range 25 {
		mustPut(t, f, fmt.Sprintf("k%d", i), "v", time.Hour)
	}
	if f.Len() != 10 {
		t.Errorf("%d records, want 10", f.Len())
	}
	mustGet(t, f, "k24", "v")
	mustMiss(t, f, "k0")
	if err := f.Put(context.Background(), []byte("big"), make([]byte, maxFileValue+1), time.Hour); !errors.Is(err, ErrTooLarge) {
		t.Errorf("huge value: %v", err)
	}
	f.Close()
	g := openFile(t, path, FileConfig{Capacity: 10, NoSync: true})
	defer g.Close()
	if g.Len() != 10 {
		t.Errorf("%d records after reopen, want 10", g.Len())
	}
	mustGet(t, g, "k24", "v")
}

func TestFileMeta(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	f := openFile(t, path, FileConfig{Capacity: 1, NoSync: true})
	ctx := context.Background()
	if err := f.PutMeta(ctx, "a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := f.PutMeta(ctx, "b", []byte("2")); err != nil {
		t.Fatal(err)
	}
	// Meta records are never evicted by ordinary ones, and do not collide
	// with ordinary keys of the same name.
	mustPut(t, f, "a", "record", time.Hour)
	mustPut(t, f, "c", "record", time.Hour)
	if err := f.PutMeta(ctx, "b", nil); err != nil {
		t.Fatal(err)
	}
	f.Close()
	g := openFile(t, path, FileConfig{Capacity: 1, NoSync: true})
	defer g.Close()
	if v, ok := g.GetMeta("a"); !ok || string(v) != "1" {
		t.Errorf("meta a = %q %v", v, ok)
	}
	if _, ok := g.GetMeta("b"); ok {
		t.Error("deleted meta b still there")
	}
	mustGet(t, g, "c", "record")
}

// TestFileKeyRing: the ticket key ring kept in a file store opens, after a
// restart, the tickets sealed before it, and a rotation is saved.
func TestFileKeyRing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	clock := newFakeClock()
	cfg := ticketfmt.KeyRingConfig{Now: clock.Now, Rotation: time.Hour, TicketLifetime: 2 * time.Hour}
	f := openFile(t, path, FileConfig{Now: clock.Now})
	pr, err := FileKeyRing(f, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := &ticketfmt.State{Version: 0xfefd, CipherSuite: 0xc0a8, SessionCreated: clock.Now(), Lifetime: time.Hour,
		Peer: ticketfmt.PeerIdentity{Type: ticketfmt.PSK, PSKIdentity: []byte("c")}}
	t1, err := pr.Ring.Seal(st, ticketfmt.LabelServer)
	if err != nil {
		t.Fatal(err)
	}
	first := pr.Ring.Keys()[0]
	if err := pr.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()

	f = openFile(t, path, FileConfig{Now: clock.Now})
	pr, err = FileKeyRing(f, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pr.Ring.Open(t1, ticketfmt.LabelServer); err != nil {
		t.Fatalf("ticket from before the restart: %v", err)
	}
	if k := pr.Ring.Keys(); len(k) != 1 || k[0].Name != first.Name {
		t.Fatalf("keys after restart %+v, want the same single key", k)
	}
	// A rotation (at the next Seal) is saved without Close: simulate a
	// crash by reading the file while the store is open.
	clock.Advance(61 * time.Minute)
	t2, err := pr.Ring.Seal(st, ticketfmt.LabelServer)
	if err != nil {
		t.Fatal(err)
	}
	var saved []ticketfmt.ExportedKey
	for range 200 {
		b, _ := f.GetMeta(fileRingMeta)
		if saved, err = decodeTicketKeys(b); err == nil && len(saved) == 2 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(saved) != 2 {
		t.Fatalf("rotation not saved: %v", saved)
	}
	pr.Close()
	f.Close()
	f = openFile(t, path, FileConfig{Now: clock.Now})
	defer f.Close()
	pr, err = FileKeyRing(f, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	for i, tk := range [][]byte{t1, t2} {
		if _, err := pr.Ring.Open(tk, ticketfmt.LabelServer); err != nil {
			t.Errorf("ticket %d after the second restart: %v", i+1, err)
		}
	}
	// Keys past their time are not brought back.
	clock.Advance(5 * time.Hour)
	pr2, err := FileKeyRing(f, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pr2.Close()
	if _, err := pr2.Ring.Open(t1, ticketfmt.LabelServer); !errors.Is(err, ticketfmt.ErrUnknownKey) {
		t.Errorf("expired key: %v", err)
	}
}
