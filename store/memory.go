package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// Defaults of [MemoryConfig].
const (
	DefaultMemoryCapacity = 10000    // records
	DefaultMemoryMaxBytes = 64 << 20 // bytes of keys and values
)

// reapPerPut is how many records at the least recently used end Put looks at,
// and removes if they have expired, besides any it evicts.
const reapPerPut = 2

// MemoryConfig configures a [Memory] store. The zero value is usable.
type MemoryConfig struct {
	// Capacity bounds the number of records; zero or negative means
	// DefaultMemoryCapacity, and more than 2^31-3 means 2^31-3. The index
	// is allocated for Capacity records up front (16 bytes a record, up to
	// 1,048,575 records); a larger store grows its index as it fills,
	// rehashing all of it each time the number of records doubles.
	Capacity int
	// MaxBytes bounds the sum of the lengths of all keys and values; zero or
	// negative means DefaultMemoryMaxBytes. A single record (key plus value)
	// larger than MaxBytes is refused. Bookkeeping is not counted: with the
	// allocator's rounding it adds 50–70 bytes to each record
	// (BenchmarkMemoryMillionSessions), so a million session-ID records of
	// 127 bytes take ~177 MB of heap, a million client_state records of 268
	// bytes ~337 MB.
	MaxBytes int
	// Now is the clock; nil means time.Now. Expiry compares wall-clock
	// times (Unix nanoseconds), not monotonic ones.
	Now func() time.Time
}

// MemoryStats is a snapshot of a [Memory] store's state and counters.
type MemoryStats struct {
	Entries   int    // records held, including expired ones not yet removed
	Bytes     int    // sum of the lengths of their keys and values
	Hits      uint64 // Gets that found a live record
	Misses    uint64 // Gets that found none, or an expired one
	Evictions uint64 // live records removed to stay within Capacity or MaxBytes
	Expired   uint64 // expired records removed (on Get, or reaped by Put)
}

// Memory is the in-process [Store]: an LRU bounded by record count and by
// bytes, with per-record expiry. When a Put would exceed either bound, the
// least recently used records (Get and Put both count as use) are removed
// until it fits. Expired records are removed lazily, when Get meets them and
// opportunistically by Put at the least recently used end; there is no
// background goroutine. Every operation is O(1); beyond a million records
// (see [MemoryConfig].Capacity), amortized O(1).
//
// Memory is safe for concurrent use. Its zero value is not usable; call
// [NewMemory].
type Memory struct {
	capacity int
	maxBytes int
	now      func() time.Time

	mu sync.Mutex
	// The records live in slots, allocated in chunks that never move; a
	// record's key and value share one allocation (slot.rec). Slot 0 is the
	// sentinel of the recency list: its next is the most, its prev the least
	// recently used record. Free slots are chained through next, from free.
	chunks []*[chunkSlots]slot
	used   uint32 // slots ever handed out, the sentinel included
	free   uint32 // first free slot, 0 if none
	// index finds a record's slot by key: an open-addressing hash table
	// (linear probing, at most half full), hashed with a per-store random
	// seed. An entry is the low 32 bits of the key's hash (which hold its
	// home position) above the slot number; 0 is empty.
	index []uint64
	seed  maphash.Seed
	stats MemoryStats
}

// slot is one record, linked into Memory's recency list by slot number.
// 32 bytes, and one pointer for the garbage collector to follow.
type slot struct {
	rec        string // uvarint(len(key)) ‖ key ‖ value; "" when free
	expires    int64  // Unix nanoseconds: the record is dead from this instant on
	prev, next uint32
}

// chunkSlots is the number of slots allocated at a time (32 KiB).
const chunkSlots = 1024

// maxSlots bounds the slot numbers, sentinel included, so that an index
// for them has at most 2^32 positions (what its hash bits address).
const maxSlots = math.MaxInt32

// maxIndexPrealloc bounds the index NewMemory allocates for Capacity
// (16 MiB, enough for 1,048,575 records without growing); beyond it the
// index doubles as the store fills.
const maxIndexPrealloc = 1 << 21

// NewMemory returns an empty Memory store configured by cfg.
func NewMemory(cfg MemoryConfig) *Memory {
	m := &Memory{
		capacity: cfg.Capacity,
		maxBytes: cfg.MaxBytes,
		now:      cfg.Now,
		seed:     maphash.MakeSeed(),
	}
	if m.capacity <= 0 {
		m.capacity = DefaultMemoryCapacity
	}
	// A full store uses Capacity slots, one more while Put evicts, and the
	// sentinel.
	if m.capacity > maxSlots-2 {
		m.capacity = maxSlots - 2
	}
	if m.maxBytes <= 0 {
		m.maxBytes = DefaultMemoryMaxBytes
	}
	if m.now == nil {
		m.now = time.Now
	}
	m.chunks = []*[chunkSlots]slot{new([chunkSlots]slot)}
	m.used = 1 // the sentinel, linked to itself
	// Room for Capacity records (one more while Put evicts), at most half
	// full: the index of a store of up to a million records never grows.
	m.index = make([]uint64, indexSize(m.capacity+1))
	return m
}

var _ Store = (*Memory)(nil)

// Get returns a copy of the live record under key, and makes it the most
// recently used. It returns [ErrNotFound] when there is none; an expired
// record it meets is removed.
func (m *Memory) Get(ctx context.Context, key []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := m.now().UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	_, i := find(m, maphash.Bytes(m.seed, key), key)
	if i == 0 {
		m.stats.Misses++
		return nil, ErrNotFound
	}
	s := m.slot(i)
	if now >= s.expires {
		m.remove(i)
		m.stats.Expired++
		m.stats.Misses++
		return nil, ErrNotFound
	}
	m.moveToFront(i)
	m.stats.Hits++
	_, val := splitRec(s.rec)
	v := make([]byte, len(val))
	copy(v, val)
	return v, nil
}

// Put stores copies of key and value for ttl, as the most recently used
// record, replacing any record under key. It refuses a ttl <= 0
// ([ErrInvalidTTL]) and a record whose key and value together exceed
// MaxBytes ([ErrTooLarge]); a refused Put leaves the store unchanged.
func (m *Memory) Put(ctx context.Context, key, value []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if ttl <= 0 {
		return ErrInvalidTTL
	}
	if n := len(key) + len(value); n > m.maxBytes {
		return fmt.Errorf("store: Put: record of %d bytes exceeds MaxBytes %d: %w", n, m.maxBytes, ErrTooLarge)
	}
	// Copy and hash outside the lock.
	rec := makeRec(key, value)
	h := maphash.Bytes(m.seed, key)
	now := m.now().UnixNano()
	expires := now + int64(ttl)
	if expires < now { // overflow: as good as never
		expires = math.MaxInt64
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	m.store(rec, h, expires)

	// Reap expired records at the cold end, then evict until within bounds.
	// The record just stored is at the front, live, and fits on its own, so
	// neither loop reaches it.
	for range reapPerPut {
		last := m.slot(0).prev
		if last == 0 || now < m.slot(last).expires {
			break
		}
		m.remove(last)
		m.stats.Expired++
	}
	m.evict(now)
	return nil
}

// Delete removes the record under key, if any.
func (m *Memory) Delete(ctx context.Context, key []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, i := find(m, maphash.Bytes(m.seed, key), key); i != 0 {
		m.remove(i)
	}
	return nil
}

// Len returns the number of records held, including expired ones not yet
// removed.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats.Entries
}

// Stats returns a snapshot of the store's state and counters.
func (m *Memory) Stats() MemoryStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}

// Records: one allocation holds the key's length, the key and the value.

// makeRec returns uvarint(len(key)) ‖ key ‖ value as one string.
func makeRec(key, value []byte) string {
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], uint64(len(key)))
	var b strings.Builder
	b.Grow(n + len(key) + len(value))
	b.Write(hdr[:n])
	b.Write(key)
	b.Write(value)
	return b.String()
}

// makeRecString is makeRec for a key that is already a string.
func makeRecString(key string, value []byte) string {
	var hdr [binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], uint64(len(key)))
	var b strings.Builder
	b.Grow(n + len(key) + len(value))
	b.Write(hdr[:n])
	b.WriteString(key)
	b.Write(value)
	return b.String()
}

// splitRec returns the key and value of a record made by makeRec; both
// share its memory. (binary.Uvarint, for a string.)
func splitRec(rec string) (key, value string) {
	var n uint64
	var shift uint
	i := 0
	for ; ; i++ {
		c := rec[i]
		n |= uint64(c&0x7f) << shift
		if c < 0x80 {
			break
		}
		shift += 7
	}
	rec = rec[i+1:]
	return rec[:n], rec[n:]
}

// recSize is the length of a record's key plus its value.
func recSize(rec string) int {
	k, v := splitRec(rec)
	return len(k) + len(v)
}

// The slots and the recency list. Callers hold m.mu.

func (m *Memory) slot(i uint32) *slot {
	return &m.chunks[i/chunkSlots][i%chunkSlots]
}

// store puts rec, whose key hashes to h, expiring at expires, as the most
// recently used record, replacing any record under its key.
func (m *Memory) store(rec string, h uint64, expires int64) {
	key, _ := splitRec(rec)
	size := recSize(rec)
	pos, i := find(m, h, key)
	if i != 0 {
		s := m.slot(i)
		m.stats.Bytes += size - recSize(s.rec)
		s.rec, s.expires = rec, expires
		m.moveToFront(i)
	} else {
		if 2*(m.stats.Entries+1) > len(m.index) {
			m.grow()
			pos, _ = find(m, h, key)
		}
		i := m.alloc()
		s := m.slot(i)
		s.rec, s.expires = rec, expires
		m.index[pos] = h<<32 | uint64(i)
		m.pushFront(i)
		m.stats.Bytes += size
		m.stats.Entries++
	}
}

// evict removes least recently used records until the store is within its
// bounds.
func (m *Memory) evict(now int64) {
	for m.stats.Entries > m.capacity || m.stats.Bytes > m.maxBytes {
		last := m.slot(0).prev
		dead := now >= m.slot(last).expires
		m.remove(last)
		if dead {
			m.stats.Expired++
		} else {
			m.stats.Evictions++
		}
	}
}

// alloc returns a free slot, reusing a released one if there is any.
func (m *Memory) alloc() uint32 {
	if i := m.free; i != 0 {
		m.free = m.slot(i).next
		return i
	}
	// Entries <= capacity < maxSlots, so a slot is left.
	i := m.used
	m.used++
	if int(i/chunkSlots) == len(m.chunks) {
		m.chunks = append(m.chunks, new([chunkSlots]slot))
	}
	return i
}

func (m *Memory) pushFront(i uint32) {
	root, s := m.slot(0), m.slot(i)
	s.prev, s.next = 0, root.next
	m.slot(root.next).prev = i
	root.next = i
}

func (m *Memory) unlink(i uint32) {
	s := m.slot(i)
	m.slot(s.prev).next = s.next
	m.slot(s.next).prev = s.prev
	s.prev, s.next = 0, 0
}

func (m *Memory) moveToFront(i uint32) {
	if m.slot(0).next == i {
		return
	}
	m.unlink(i)
	m.pushFront(i)
}

// remove drops record i from the list, the index and the accounting, and
// frees its slot.
func (m *Memory) remove(i uint32) {
	m.unlink(i)
	s := m.slot(i)
	m.unindex(i)
	m.stats.Entries--
	m.stats.Bytes -= recSize(s.rec)
	*s = slot{next: m.free}
	m.free = i
}

// The index. Callers hold m.mu.

// indexSize is the size of the index NewMemory allocates for n records: a
// power of two, at least 2n, at most maxIndexPrealloc.
func indexSize(n int) int {
	if n > maxIndexPrealloc/2 {
		return maxIndexPrealloc
	}
	return max(8, 1<<bits.Len(uint(2*n-1)))
}

// find returns the index position of the record under key, whose hash is h,
// and its slot; or, when there is none, slot 0 and the free position where
// the key belongs.
func find[K string | []byte](m *Memory, h uint64, key K) (pos uint64, i uint32) {
	mask := uint64(len(m.index) - 1)
	tag := uint32(h)
	for pos = h & mask; ; pos = (pos + 1) & mask {
		e := m.index[pos]
		if e == 0 {
			return pos, 0
		}
		if uint32(e>>32) != tag {
			continue
		}
		i = uint32(e)
		if k, _ := splitRec(m.slot(i).rec); k == string(key) {
			return pos, i
		}
	}
}

// unindex removes slot i from the index, shifting back the records after
// it that probed past its position, so that no tombstones are needed.
func (m *Memory) unindex(i uint32) {
	mask := uint64(len(m.index) - 1)
	k, _ := splitRec(m.slot(i).rec)
	pos := maphash.String(m.seed, k) & mask
	for uint32(m.index[pos]) != i {
		pos = (pos + 1) & mask
	}
	for j := (pos + 1) & mask; m.index[j] != 0; j = (j + 1) & mask {
		// The record at j may move to pos if pos lies between its home and
		// j (cyclically).
		if (j-m.index[j]>>32)&mask >= (j-pos)&mask {
			m.index[pos] = m.index[j]
			pos = j
		}
	}
	m.index[pos] = 0
}

// grow doubles the index. It runs only in a store of more than a million
// records, each time the number of records doubles.
func (m *Memory) grow() {
	old := m.index
	m.index = make([]uint64, 2*len(old))
	mask := uint64(len(m.index) - 1)
	for _, e := range old {
		if e == 0 {
			continue
		}
		pos := e >> 32 & mask
		for m.index[pos] != 0 {
			pos = (pos + 1) & mask
		}
		m.index[pos] = e
	}
}

// Unexported helpers for stores that keep their index in a Memory.

// putUntil stores value under key until expires, as Put does; it refuses
// what Put refuses. It copies value, which the caller may reuse.
func (m *Memory) putUntil(key string, value []byte, expires time.Time) error {
	if n := len(key) + len(value); n > m.maxBytes {
		return fmt.Errorf("store: Put: record of %d bytes exceeds MaxBytes %d: %w", n, m.maxBytes, ErrTooLarge)
	}
	rec := makeRecString(key, value)
	h := maphash.String(m.seed, key)
	now := m.now().UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.store(rec, h, expires.UnixNano())
	m.evict(now)
	return nil
}

// deleteKey removes the record under key, if any.
func (m *Memory) deleteKey(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, i := find(m, maphash.String(m.seed, key), key); i != 0 {
		m.remove(i)
	}
}

// memRecord is a live record of a snapshot.
type memRecord struct {
	key     string
	value   []byte // shared with the store: read only
	expires time.Time
}

// snapshot returns the live records, least recently used first.
func (m *Memory) snapshot() []memRecord {
	now := m.now().UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]memRecord, 0, m.stats.Entries)
	for i := m.slot(0).prev; i != 0; i = m.slot(i).prev {
		s := m.slot(i)
		if now < s.expires {
			k, v := splitRec(s.rec)
			// The value aliases the record's immutable string: a record is
			// never modified, only replaced, and the caller only reads it.
			out = append(out, memRecord{k, unsafe.Slice(unsafe.StringData(v), len(v)), time.Unix(0, s.expires)})
		}
	}
	return out
}
