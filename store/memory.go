package store

import (
	"context"
	"fmt"
	"sync"
	"time"
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
	// DefaultMemoryCapacity.
	Capacity int
	// MaxBytes bounds the sum of the lengths of all keys and values; zero or
	// negative means DefaultMemoryMaxBytes. A single record (key plus value)
	// larger than MaxBytes is refused. Bookkeeping overhead is not counted
	// (see BenchmarkMemoryGetPut's bytes/entry for an estimate).
	MaxBytes int
	// Now is the clock; nil means time.Now.
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
// background goroutine. Every operation is O(1).
//
// Memory is safe for concurrent use. Its zero value is not usable; call
// [NewMemory].
type Memory struct {
	capacity int
	maxBytes int
	now      func() time.Time

	mu    sync.Mutex
	items map[string]*entry
	root  entry // sentinel of the recency list: root.next most, root.prev least recent
	stats MemoryStats
}

// entry is one record, linked into Memory's recency list.
type entry struct {
	prev, next *entry
	key        string
	value      []byte
	expires    time.Time
}

func (e *entry) size() int { return len(e.key) + len(e.value) }

var _ Store = (*Memory)(nil)

// NewMemory returns an empty Memory store configured by cfg.
func NewMemory(cfg MemoryConfig) *Memory {
	m := &Memory{
		capacity: cfg.Capacity,
		maxBytes: cfg.MaxBytes,
		now:      cfg.Now,
		items:    make(map[string]*entry),
	}
	if m.capacity <= 0 {
		m.capacity = DefaultMemoryCapacity
	}
	if m.maxBytes <= 0 {
		m.maxBytes = DefaultMemoryMaxBytes
	}
	if m.now == nil {
		m.now = time.Now
	}
	m.root.next, m.root.prev = &m.root, &m.root
	return m
}

// Get returns a copy of the live record under key, and makes it the most
// recently used. It returns [ErrNotFound] when there is none; an expired
// record it meets is removed.
func (m *Memory) Get(ctx context.Context, key []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.items[string(key)]
	if !ok {
		m.stats.Misses++
		return nil, ErrNotFound
	}
	if !now.Before(e.expires) {
		m.remove(e)
		m.stats.Expired++
		m.stats.Misses++
		return nil, ErrNotFound
	}
	m.moveToFront(e)
	m.stats.Hits++
	v := make([]byte, len(e.value))
	copy(v, e.value)
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
	// Copy outside the lock.
	v := make([]byte, len(value))
	copy(v, value)
	now := m.now()
	expires := now.Add(ttl)

	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.items[string(key)]; ok {
		m.stats.Bytes += len(v) - len(e.value)
		e.value = v
		e.expires = expires
		m.moveToFront(e)
	} else {
		e := &entry{key: string(key), value: v, expires: expires}
		m.items[e.key] = e
		m.pushFront(e)
		m.stats.Bytes += e.size()
		m.stats.Entries++
	}

	// Reap expired records at the cold end, then evict until within bounds.
	// The record just stored is at the front and fits on its own, so neither
	// loop reaches it.
	for i := 0; i < reapPerPut; i++ {
		last := m.root.prev
		if last == &m.root || now.Before(last.expires) {
			break
		}
		m.remove(last)
		m.stats.Expired++
	}
	for m.stats.Entries > m.capacity || m.stats.Bytes > m.maxBytes {
		last := m.root.prev
		m.remove(last)
		if now.Before(last.expires) {
			m.stats.Evictions++
		} else {
			m.stats.Expired++
		}
	}
	return nil
}

// Delete removes the record under key, if any.
func (m *Memory) Delete(ctx context.Context, key []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.items[string(key)]; ok {
		m.remove(e)
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

// The recency list. Callers hold m.mu.

func (m *Memory) pushFront(e *entry) {
	e.prev = &m.root
	e.next = m.root.next
	e.next.prev = e
	m.root.next = e
}

func (m *Memory) unlink(e *entry) {
	e.prev.next = e.next
	e.next.prev = e.prev
	e.prev, e.next = nil, nil
}

func (m *Memory) moveToFront(e *entry) {
	if m.root.next == e {
		return
	}
	m.unlink(e)
	m.pushFront(e)
}

// remove drops e from the list, the index and the accounting.
func (m *Memory) remove(e *entry) {
	m.unlink(e)
	delete(m.items, e.key)
	m.stats.Entries--
	m.stats.Bytes -= e.size()
}

// Unexported helpers for stores that keep their index in a Memory.

// putUntil stores value (not copied: the caller gives it up) under key until
// expires, as Put does; it refuses what Put refuses.
func (m *Memory) putUntil(key string, value []byte, expires time.Time) error {
	if n := len(key) + len(value); n > m.maxBytes {
		return fmt.Errorf("store: Put: record of %d bytes exceeds MaxBytes %d: %w", n, m.maxBytes, ErrTooLarge)
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.items[key]; ok {
		m.stats.Bytes += len(value) - len(e.value)
		e.value = value
		e.expires = expires
		m.moveToFront(e)
	} else {
		e := &entry{key: key, value: value, expires: expires}
		m.items[e.key] = e
		m.pushFront(e)
		m.stats.Bytes += e.size()
		m.stats.Entries++
	}
	for m.stats.Entries > m.capacity || m.stats.Bytes > m.maxBytes {
		last := m.root.prev
		m.remove(last)
		if now.Before(last.expires) {
			m.stats.Evictions++
		} else {
			m.stats.Expired++
		}
	}
	return nil
}

// deleteKey removes the record under key, if any.
func (m *Memory) deleteKey(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.items[key]; ok {
		m.remove(e)
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
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]memRecord, 0, m.stats.Entries)
	for e := m.root.prev; e != &m.root; e = e.prev {
		if now.Before(e.expires) {
			out = append(out, memRecord{e.key, e.value, e.expires})
		}
	}
	return out
}
