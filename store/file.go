package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/dtlsresume/dtlsresume/internal/atomicfile"
)

// Defaults of [FileConfig].
const (
	DefaultFileCompactMinBytes  = 1 << 20 // bytes of log before compaction is considered
	DefaultFileMaxPendingWrites = 64
)

// FileConfig configures a [File] store. The zero value is usable.
type FileConfig struct {
	// Capacity and MaxBytes bound the live records as in [MemoryConfig]
	// (MaxBytes counts the 16-byte key IDs and the values); zero means the
	// Memory defaults. The log on disk holds at most about twice that
	// between compactions.
	Capacity int
	MaxBytes int
	// NoSync skips fsync. A killed process still loses nothing (the
	// records are in the kernel's page cache); a power failure may lose the
	// records written in the last seconds, and never corrupts the file.
	// For tests and benchmarks; default false: every write is fsynced
	// before Put returns (concurrent writes share one fsync).
	NoSync bool
	// CompactMinBytes: the log is rewritten with only its live records
	// once it is larger than this and more than twice what its live records
	// need. Default DefaultFileCompactMinBytes.
	CompactMinBytes int64
	// MaxPendingWrites bounds the writes waiting for the disk (a disk that
	// hangs); beyond it Put and Delete fail at once. Default
	// DefaultFileMaxPendingWrites.
	MaxPendingWrites int
	// Logger receives warnings (damaged records, write errors); nil
	// discards them. No secret is ever logged.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// FileStats is a snapshot of a [File] store's state and counters.
type FileStats struct {
	Memory       MemoryStats // the in-memory index of live records
	FileBytes    int64       // size of the log on disk
	Compactions  uint64      // successful compactions since open
	Damaged      int         // damaged regions skipped when the log was loaded (tampered, corrupt or replayed records)
	TornBytes    int64       // bytes of a torn last write cut off when the log was loaded
	Loaded       int         // records that were loaded and live at open
	WriteErrors  uint64      // failed writes (the operation returned an error)
	MetaRecords  int         // meta records held (see PutMeta)
	LogRecords   uint64      // records in the current log file
	RecordOffset int64       // bytes of the header (the first record's offset)
}

// ErrClosed is returned by a store's methods after Close.
var ErrClosed = errors.New("store: closed")

// errBusy is returned when too many writes wait for the disk.
var errBusy = errors.New("store: file: too many writes waiting for the disk")

// The log's layout. See the package documentation.
const (
	fileMagic      = "DTLSRSF\x01"
	fileSaltSize   = 16
	fileSyncSize   = 8
	fileCheckSize  = 16
	fileHeaderSize = len(fileMagic) + fileSaltSize + fileSyncSize + fileCheckSize // 48

	recFrameSize = fileSyncSize + 4      // sync marker, length
	recPlainHead = 1 + 8 + keyIDSize + 8 // op, seq, key ID, expiry
	// FileRecordOverhead is what the log adds to each record's value: the
	// sync marker, length, nonce, tag, operation, sequence number, key ID
	// and expiry (85 bytes).
	FileRecordOverhead = recFrameSize + sealOverhead + recPlainHead

	// maxFileValue bounds a value; larger ones are ErrTooLarge.
	maxFileValue = 1 << 20
)

// Record operations.
const (
	opPut        = 1
	opDelete     = 2
	opMetaPut    = 3
	opMetaDelete = 4
)

// Key-ID domains.
const (
	domRecord = 0
	domMeta   = 1
)

type fileHeader struct {
	salt [fileSaltSize]byte
	sync [fileSyncSize]byte
}

func newFileHeader() (fileHeader, error) {
	var h fileHeader
	if _, err := rand.Read(h.salt[:]); err != nil {
		return h, err
	}
	_, err := rand.Read(h.sync[:])
	return h, err
}

func (h *fileHeader) marshal(s *sealer) []byte {
	b := make([]byte, 0, fileHeaderSize)
	b = append(b, fileMagic...)
	b = append(b, h.salt[:]...)
	b = append(b, h.sync[:]...)
	return append(b, s.mac(b)[:fileCheckSize]...)
}

func parseFileHeader(b []byte, s *sealer) (fileHeader, error) {
	var h fileHeader
	if len(b) < fileHeaderSize || string(b[:len(fileMagic)]) != fileMagic {
		return h, errors.New("not a dtlsresume store file (bad magic)")
	}
	body := b[:fileHeaderSize-fileCheckSize]
	if subtle.ConstantTimeCompare(s.mac(body)[:fileCheckSize], b[len(body):fileHeaderSize]) != 1 {
		return h, errors.New("header check failed: wrong store key, or a damaged header")
	}
	copy(h.salt[:], b[len(fileMagic):])
	copy(h.sync[:], b[len(fileMagic)+fileSaltSize:])
	return h, nil
}

// aad is the additional data of every record in a file with this header.
func (h *fileHeader) aad() []byte {
	return append([]byte(fileMagic), h.salt[:]...)
}

// fileOp is one record of the log.
type fileOp struct {
	op      byte
	seq     uint64
	id      [keyIDSize]byte
	expires int64 // Unix nanoseconds; 0 for meta records
	value   []byte
}

// File is a [Store] that survives a restart: an append-only log of sealed
// records on disk, replayed into a bounded in-memory index at open and
// compacted in the background. Records are encrypted and authenticated under
// keys derived from the operator's key, and record keys (session IDs,
// client_state handles) are kept only as keyed hashes. See the package
// documentation for the format and the guarantees.
//
// Get is served from memory and never waits for the disk. Put and Delete
// return once the record is written (and fsynced, unless NoSync); when ctx
// ends first they return its error and the write may still complete. A
// failed write (disk full) leaves the store as it was and returns an error.
//
// A File is safe for concurrent use; one process at a time may open a path
// (a lock file PATH.lock enforces it).
type File struct {
	path       string
	sealer     *sealer
	index      *Memory
	now        func() time.Time
	log        *slog.Logger
	noSync     bool
	compactMin int64
	sem        chan struct{}
	lock       *os.File

	smu       sync.Mutex // serialises fsync; taken before wmu
	syncedGen uint64
	synced    int64

	wmu        sync.Mutex
	f          *os.File
	hdr        fileHeader
	size       int64
	seq        uint64
	gen        uint64
	closed     bool
	closing    bool // Close has begun: no new compaction
	compacting bool
	compacted  chan struct{} // closed when the running compaction ends
	pending    []fileOp
	meta       map[[keyIDSize]byte][]byte
	stats      FileStats

	bg sync.WaitGroup
}

var _ Store = (*File)(nil)

// NewFile opens the store kept at path, creating it if it does not exist.
// key is the operator's 32-byte store key; opening an existing file with
// another key fails (nothing is lost: open it with the right key, or remove
// it). Records that fail authentication are skipped and logged, a torn last
// record is cut off, and expired records are dropped; none of these is an
// error.
func NewFile(path string, key []byte, cfg FileConfig) (*File, error) {
	s, err := newSealer(key)
	if err != nil {
		return nil, err
	}
	f := &File{
		path:       path,
		sealer:     s,
		index:      NewMemory(MemoryConfig{Capacity: cfg.Capacity, MaxBytes: cfg.MaxBytes, Now: cfg.Now}),
		now:        cfg.Now,
		log:        cfg.Logger,
		noSync:     cfg.NoSync,
		compactMin: cfg.CompactMinBytes,
		meta:       make(map[[keyIDSize]byte][]byte),
	}
	if f.now == nil {
		f.now = time.Now
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if f.compactMin <= 0 {
		f.compactMin = DefaultFileCompactMinBytes
	}
	n := cfg.MaxPendingWrites
	if n <= 0 {
		n = DefaultFileMaxPendingWrites
	}
	f.sem = make(chan struct{}, n)

	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store: file: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("store: file %s: in use by another process (%w)", path, err)
	}
	f.lock = lock
	// Under the lock no one else writes the log: what a crash left in the
	// middle of a compaction goes (and PATH.compact, where versions before
	// internal/atomicfile wrote).
	if err := atomicfile.RemoveStale(path); err != nil {
		f.log.Warn("store: file: removing temporary files a crash left", "path", path, "err", err)
	}
	if err := os.Remove(path + ".compact"); err != nil && !errors.Is(err, os.ErrNotExist) {
		f.log.Warn("store: file: removing a temporary file a crash left", "path", path+".compact", "err", err)
	}
	if err := f.load(); err != nil {
		f.unlock()
		return nil, err
	}
	return f, nil
}

func (f *File) unlock() {
	if f.lock != nil {
		_ = syscall.Flock(int(f.lock.Fd()), syscall.LOCK_UN)
		f.lock.Close()
		f.lock = nil
	}
}

// load reads the log, or creates an empty one.
func (f *File) load() error {
	data, err := os.ReadFile(f.path)
	if errors.Is(err, os.ErrNotExist) {
		hdr, err := newFileHeader()
		if err != nil {
			return fmt.Errorf("store: file: %w", err)
		}
		out, err := f.writeLog(hdr, nil, nil)
		if err != nil {
			return err
		}
		f.f, f.hdr, f.size = out, hdr, int64(fileHeaderSize)
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: file: %w", err)
	}
	hdr, err := parseFileHeader(data, f.sealer)
	if err != nil {
		return fmt.Errorf("store: file %s: %w", f.path, err)
	}
	f.hdr = hdr
	end, damaged := f.replay(data)
	f.stats.Damaged = damaged
	f.stats.Loaded = f.index.Len()
	out, err := os.OpenFile(f.path, os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("store: file: %w", err)
	}
	f.f, f.size = out, int64(len(data))
	if torn := int64(len(data) - end); torn > 0 {
		f.stats.TornBytes = torn
		f.log.Warn("store: file: cutting off a torn or damaged tail", "path", f.path, "bytes", torn)
		if err := out.Truncate(int64(end)); err != nil {
			f.log.Warn("store: file: truncating the tail failed; appending after it", "path", f.path, "err", err)
		} else {
			f.size = int64(end)
			if !f.noSync {
				_ = out.Sync()
			}
		}
	}
	if damaged > 0 {
		f.log.Warn("store: file: skipped damaged records (tampered, corrupt or replayed); none was loaded", "path", f.path, "regions", damaged)
		// Rewrite the log without them.
		if err := f.compact(); err != nil {
			f.log.Warn("store: file: compaction after damage failed", "path", f.path, "err", err)
		}
	}
	return nil
}

// replay applies the log's records to the index. It returns the end of the
// last good record and the number of damaged regions it skipped.
func (f *File) replay(data []byte) (end, damaged int) {
	now := f.now().UnixNano()
	aad := f.hdr.aad()
	pos := fileHeaderSize
	end = pos
	var lastSeq uint64
	inDamage := false
	for pos < len(data) {
		op, n, ok := f.parseRecord(data[pos:], aad)
		if ok && op.seq > lastSeq {
			lastSeq = op.seq
			f.apply(op, now)
			pos += n
			end = pos
			inDamage = false
			continue
		}
		// Resynchronise at the next sync marker; if no good record
		// follows, this was a torn tail (end stays where it is).
		if !inDamage {
			damaged++
			inDamage = true
		}
		i := bytes.Index(data[pos+1:], f.hdr.sync[:])
		if i < 0 {
			break
		}
		pos += 1 + i
	}
	if inDamage {
		// The last damaged region ran to the end of the file: a torn
		// tail, not counted as damage in the middle.
		damaged--
	}
	f.seq = lastSeq
	f.stats.LogRecords = lastSeq
	return end, damaged
}

// parseRecord parses and opens the record at the start of b.
func (f *File) parseRecord(b []byte, aad []byte) (fileOp, int, bool) {
	var op fileOp
	if len(b) < recFrameSize || !bytes.Equal(b[:fileSyncSize], f.hdr.sync[:]) {
		return op, 0, false
	}
	n := int(binary.BigEndian.Uint32(b[fileSyncSize:]))
	if n < sealOverhead+recPlainHead || n > maxFileValue+sealOverhead+recPlainHead || len(b)-recFrameSize < n {
		return op, 0, false
	}
	plain, err := f.sealer.open(b[recFrameSize:recFrameSize+n], aad)
	if err != nil {
		return op, 0, false
	}
	op.op = plain[0]
	op.seq = binary.BigEndian.Uint64(plain[1:])
	copy(op.id[:], plain[9:])
	op.expires = int64(binary.BigEndian.Uint64(plain[9+keyIDSize:]))
	op.value = plain[recPlainHead:]
	if op.op < opPut || op.op > opMetaDelete {
		return op, 0, false
	}
	return op, recFrameSize + n, true
}

// apply makes op's effect on the index at load.
func (f *File) apply(op fileOp, now int64) {
	switch op.op {
	case opPut:
		if op.expires <= now {
			f.index.deleteKey(string(op.id[:]))
			return
		}
		_ = f.index.putUntil(string(op.id[:]), op.value, time.Unix(0, op.expires))
	case opDelete:
		f.index.deleteKey(string(op.id[:]))
	case opMetaPut:
		f.meta[op.id] = op.value
	case opMetaDelete:
		delete(f.meta, op.id)
	}
}

// appendRecord seals op (with the next sequence number of *seq) into dst.
func (f *File) appendRecord(dst []byte, hdr *fileHeader, seq *uint64, op fileOp) ([]byte, error) {
	*seq++
	plain := make([]byte, recPlainHead, recPlainHead+len(op.value))
	plain[0] = op.op
	binary.BigEndian.PutUint64(plain[1:], *seq)
	copy(plain[9:], op.id[:])
	binary.BigEndian.PutUint64(plain[9+keyIDSize:], uint64(op.expires))
	plain = append(plain, op.value...)
	start := len(dst)
	dst = append(dst, hdr.sync[:]...)
	dst = append(dst, 0, 0, 0, 0)
	dst, err := f.sealer.seal(dst, plain, hdr.aad())
	clear(plain)
	if err != nil {
		return nil, err
	}
	binary.BigEndian.PutUint32(dst[start+fileSyncSize:], uint32(len(dst)-start-recFrameSize))
	return dst, nil
}

// Get returns a copy of the live record under key. It never touches the
// disk.
func (f *File) Get(ctx context.Context, key []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	id := f.sealer.keyID(domRecord, key)
	return f.index.Get(ctx, id[:])
}

// Put stores value under key for ttl, durably (see File).
func (f *File) Put(ctx context.Context, key, value []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if ttl <= 0 {
		return ErrInvalidTTL
	}
	if len(value) > maxFileValue || keyIDSize+len(value) > f.index.maxBytes {
		return fmt.Errorf("store: Put: value of %d bytes: %w", len(value), ErrTooLarge)
	}
	op := fileOp{op: opPut, id: f.sealer.keyID(domRecord, key), expires: f.now().Add(ttl).UnixNano(), value: bytes.Clone(value)}
	return f.do(ctx, op)
}

// Delete removes the record under key. The record is gone from memory even
// when writing the deletion fails (then it may come back after a restart,
// until it expires).
func (f *File) Delete(ctx context.Context, key []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	id := f.sealer.keyID(domRecord, key)
	f.index.deleteKey(string(id[:]))
	return f.do(ctx, fileOp{op: opDelete, id: id})
}

// PutMeta stores value under name among the store's meta records: a few
// records that never expire and are never evicted (the ticket key ring is
// one), sealed like every other record. A nil value deletes the record.
func (f *File) PutMeta(ctx context.Context, name string, value []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(value) > maxFileValue {
		return fmt.Errorf("store: PutMeta: %w", ErrTooLarge)
	}
	op := fileOp{op: opMetaPut, id: f.sealer.keyID(domMeta, []byte(name)), value: bytes.Clone(value)}
	if value == nil {
		op.op = opMetaDelete
	}
	return f.do(ctx, op)
}

// GetMeta returns a copy of the meta record under name.
func (f *File) GetMeta(name string) ([]byte, bool) {
	id := f.sealer.keyID(domMeta, []byte(name))
	f.wmu.Lock()
	defer f.wmu.Unlock()
	v, ok := f.meta[id]
	return bytes.Clone(v), ok
}

// do writes op, bounded by ctx.
func (f *File) do(ctx context.Context, op fileOp) error {
	if ctx.Done() == nil {
		return f.write(op)
	}
	select {
	case f.sem <- struct{}{}:
	default:
		return errBusy
	}
	done := make(chan error, 1)
	go func() {
		defer func() { <-f.sem }()
		done <- f.write(op)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("store: file: write not confirmed: %w", ctx.Err())
	}
}

// write appends op to the log, applies it to the index, and waits for the
// fsync.
func (f *File) write(op fileOp) error {
	f.wmu.Lock()
	if f.closed {
		f.wmu.Unlock()
		return ErrClosed
	}
	seq := f.seq
	rec, err := f.appendRecord(nil, &f.hdr, &seq, op)
	if err == nil {
		_, err = f.f.WriteAt(rec, f.size)
		if err != nil {
			// Cut off what part of it was written; should that fail too,
			// the next record overwrites it, and a load skips any rest.
			_ = f.f.Truncate(f.size)
		}
	}
	if err != nil {
		f.stats.WriteErrors++
		f.wmu.Unlock()
		f.log.Warn("store: file: write failed", "path", f.path, "err", err)
		return fmt.Errorf("store: file: write: %w", err)
	}
	f.seq = seq
	f.stats.LogRecords++
	f.size += int64(len(rec))
	op.seq = seq
	switch op.op {
	case opPut:
		_ = f.index.putUntil(string(op.id[:]), op.value, time.Unix(0, op.expires))
	case opDelete:
		f.index.deleteKey(string(op.id[:]))
	case opMetaPut:
		f.meta[op.id] = op.value
	case opMetaDelete:
		delete(f.meta, op.id)
	}
	if f.compacting {
		f.pending = append(f.pending, op)
	}
	gen, end := f.gen, f.size
	start := !f.compacting && !f.closing && f.size > f.compactMin && f.size > 2*f.liveBytesLocked()
	if start {
		f.reserveCompactionLocked() // for the goroutine below
		f.bg.Add(1)
	}
	f.wmu.Unlock()

	if start {
		go func() {
			defer f.bg.Done()
			if err := f.compactReserved(); err != nil {
				f.log.Warn("store: file: compaction failed; the log keeps growing until one succeeds", "path", f.path, "err", err)
			}
		}()
	}
	return f.syncTo(gen, end)
}

// liveBytesLocked estimates the log size of the live records.
func (f *File) liveBytesLocked() int64 {
	st := f.index.Stats()
	n := int64(fileHeaderSize) + int64(st.Bytes) + int64(st.Entries)*int64(FileRecordOverhead)
	for _, v := range f.meta {
		n += int64(keyIDSize + FileRecordOverhead + len(v))
	}
	return n
}

// syncTo makes the log durable up to end of generation gen (group commit:
// one fsync covers every write before it).
func (f *File) syncTo(gen uint64, end int64) error {
	if f.noSync {
		return nil
	}
	f.smu.Lock()
	defer f.smu.Unlock()
	if f.syncedGen == gen && f.synced >= end {
		return nil
	}
	f.wmu.Lock()
	file, curGen, size := f.f, f.gen, f.size
	f.wmu.Unlock()
	if curGen != gen {
		// Compaction (or Close) replaced the log after fsyncing what it
		// holds, including this write.
		return nil
	}
	if err := file.Sync(); err != nil {
		f.log.Warn("store: file: fsync failed", "path", f.path, "err", err)
		return fmt.Errorf("store: file: fsync: %w", err)
	}
	f.syncedGen, f.synced = gen, size
	return nil
}

// Compact rewrites the log with only the live records now, as the store
// does by itself once the log has grown; it returns when done (after any
// compaction already running).
func (f *File) Compact() error {
	for {
		f.wmu.Lock()
		if f.closing {
			f.wmu.Unlock()
			return ErrClosed
		}
		if !f.compacting {
			f.reserveCompactionLocked()
			f.wmu.Unlock()
			return f.compactReserved()
		}
		wait := f.compacted
		f.wmu.Unlock()
		<-wait
	}
}

// compact is Compact at load time.
func (f *File) compact() error {
	f.reserveCompactionLocked()
	return f.compactReserved()
}

func (f *File) reserveCompactionLocked() {
	f.compacting = true
	f.compacted = make(chan struct{})
}

// endCompactionLocked ends a compaction, successful or not.
func (f *File) endCompactionLocked() {
	f.compacting = false
	f.pending = nil
	close(f.compacted)
}

// compactReserved runs a compaction; the caller reserved it.
func (f *File) compactReserved() (err error) {
	f.wmu.Lock()
	f.pending = nil
	recs := f.index.snapshot()
	meta := make([]fileOp, 0, len(f.meta))
	for id, v := range f.meta {
		meta = append(meta, fileOp{op: opMetaPut, id: id, value: v})
	}
	f.wmu.Unlock()
	defer func() {
		if err != nil {
			f.wmu.Lock()
			f.endCompactionLocked()
			f.wmu.Unlock()
		}
	}()

	hdr, err := newFileHeader()
	if err != nil {
		return err
	}
	ops := make([]fileOp, 0, len(meta)+len(recs))
	ops = append(ops, meta...)
	for _, r := range recs {
		op := fileOp{op: opPut, expires: r.expires.UnixNano(), value: r.value}
		copy(op.id[:], r.key)
		ops = append(ops, op)
	}
	var seq uint64
	out, written, err := f.writeRecords(hdr, &seq, ops)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		out.Abort()
		return err
	}

	// Switch over, with what was written meanwhile.
	f.smu.Lock()
	defer f.smu.Unlock()
	f.wmu.Lock()
	defer f.wmu.Unlock()
	if f.closed {
		return fail(ErrClosed)
	}
	if len(f.pending) > 0 {
		var buf []byte
		for _, op := range f.pending {
			if buf, err = f.appendRecord(buf, &hdr, &seq, op); err != nil {
				return fail(err)
			}
		}
		if _, err := out.WriteAt(buf, written); err != nil {
			return fail(fmt.Errorf("store: file: compaction: %w", err))
		}
		written += int64(len(buf))
	}
	if !f.noSync {
		if err := out.Sync(); err != nil {
			return fail(fmt.Errorf("store: file: compaction: %w", err))
		}
	}
	if err := out.Commit(); err != nil {
		return fail(fmt.Errorf("store: file: compaction: %w", err))
	}
	if !f.noSync {
		if err := atomicfile.SyncDir(filepath.Dir(f.path)); err != nil {
			f.log.Warn("store: file: fsync of the directory failed", "path", f.path, "err", err)
		}
	}
	if f.f != nil {
		f.f.Close()
	}
	f.f, f.hdr, f.size, f.seq = out.File, hdr, written, seq
	f.gen++
	f.endCompactionLocked()
	f.stats.Compactions++
	f.stats.LogRecords = seq
	return nil
}

// writeLog creates the log at f.path from scratch (through a temporary file
// and a rename) with the given records; used for a new store.
func (f *File) writeLog(hdr fileHeader, seq *uint64, ops []fileOp) (*os.File, error) {
	if seq == nil {
		seq = new(uint64)
	}
	out, _, err := f.writeRecords(hdr, seq, ops)
	if err != nil {
		return nil, err
	}
	if err := out.Commit(); err != nil {
		out.Abort()
		return nil, fmt.Errorf("store: file: %w", err)
	}
	if !f.noSync {
		_ = atomicfile.SyncDir(filepath.Dir(f.path))
	}
	return out.File, nil
}

// writeRecords writes a header and ops to a fresh temporary file that is to
// replace f.path (internal/atomicfile: mode 0600, never a file or link left
// at a predictable name), fsynced unless NoSync.
func (f *File) writeRecords(hdr fileHeader, seq *uint64, ops []fileOp) (*atomicfile.File, int64, error) {
	out, err := atomicfile.Create(f.path)
	if err != nil {
		return nil, 0, fmt.Errorf("store: file: %w", err)
	}
	fail := func(err error) (*atomicfile.File, int64, error) {
		out.Abort()
		return nil, 0, fmt.Errorf("store: file: writing %s: %w", out.Name(), err)
	}
	buf := hdr.marshal(f.sealer)
	var written int64
	for i, op := range ops {
		if buf, err = f.appendRecord(buf, &hdr, seq, op); err != nil {
			return fail(err)
		}
		if len(buf) >= 1<<20 || i == len(ops)-1 {
			if _, err := out.WriteAt(buf, written); err != nil {
				return fail(err)
			}
			written += int64(len(buf))
			buf = buf[:0]
		}
	}
	if len(buf) > 0 {
		if _, err := out.WriteAt(buf, written); err != nil {
			return fail(err)
		}
		written += int64(len(buf))
	}
	if !f.noSync {
		if err := out.Sync(); err != nil {
			return fail(err)
		}
	}
	return out, written, nil
}

// Len returns the number of records held, including expired ones not yet
// removed.
func (f *File) Len() int { return f.index.Len() }

// Stats returns a snapshot of the store's state and counters.
func (f *File) Stats() FileStats {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	st := f.stats
	st.Memory = f.index.Stats()
	st.FileBytes = f.size
	st.MetaRecords = len(f.meta)
	st.RecordOffset = int64(fileHeaderSize)
	return st
}

// Close waits for a running compaction, makes the log durable and closes
// it. Later calls return ErrClosed.
func (f *File) Close() error {
	f.wmu.Lock()
	if f.closing {
		f.wmu.Unlock()
		return ErrClosed
	}
	f.closing = true
	f.wmu.Unlock()
	f.bg.Wait()
	f.smu.Lock()
	defer f.smu.Unlock()
	f.wmu.Lock()
	defer f.wmu.Unlock()
	f.closed = true
	f.gen++
	var err error
	if !f.noSync {
		err = f.f.Sync()
	}
	if cerr := f.f.Close(); err == nil {
		err = cerr
	}
	f.unlock()
	if err != nil {
		return fmt.Errorf("store: file: close: %w", err)
	}
	return nil
}

var _ io.Closer = (*File)(nil)
