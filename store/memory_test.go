package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// sessionStore is dtls.SessionStore, restated: store must not import dtls,
// but its types must satisfy that interface structurally.
type sessionStore interface {
	Get(ctx context.Context, key []byte) ([]byte, error)
	Put(ctx context.Context, key, value []byte, ttl time.Duration) error
	Delete(ctx context.Context, key []byte) error
}

var (
	_ sessionStore = (*Memory)(nil)
	_ sessionStore = Store(nil)
)

// fakeClock is a settable clock, safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// check verifies the store's internal invariants: list and index agree,
// the accounting matches, both bounds hold, every slot is either in the
// list or free, and the index holds each record once, where a lookup finds
// it.
func (m *Memory) check(t testing.TB) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	n, size := 0, 0
	for i := m.slot(0).next; i != 0; i = m.slot(i).next {
		s := m.slot(i)
		key, _ := splitRec(s.rec)
		if m.slot(s.next).prev != i {
			t.Fatalf("list broken at %q", key)
		}
		if _, j := find(m, maphash.String(m.seed, key), key); j != i {
			t.Fatalf("list entry %q not in index", key)
		}
		if s.rec == "" {
			t.Fatalf("slot %d in the list is free", i)
		}
		n++
		size += recSize(s.rec)
	}
	indexed := map[uint32]bool{}
	for _, e := range m.index {
		if e == 0 {
			continue
		}
		i := uint32(e)
		if indexed[i] || i == 0 || i >= m.used {
			t.Fatalf("slot %d indexed twice, or never used", i)
		}
		indexed[i] = true
		if key, _ := splitRec(m.slot(i).rec); uint32(e>>32) != uint32(maphash.String(m.seed, key)) {
			t.Fatalf("index entry of %q holds another hash", key)
		}
	}
	if n != len(indexed) || n != m.stats.Entries {
		t.Fatalf("list has %d entries, index %d, stats %d", n, len(indexed), m.stats.Entries)
	}
	if 2*n > len(m.index) {
		t.Fatalf("index of %d holds %d records: more than half full", len(m.index), n)
	}
	if size != m.stats.Bytes {
		t.Fatalf("entries hold %d bytes, stats say %d", size, m.stats.Bytes)
	}
	if n > m.capacity || size > m.maxBytes {
		t.Fatalf("bounds exceeded: %d entries (cap %d), %d bytes (max %d)", n, m.capacity, size, m.maxBytes)
	}
	free := 0
	for i := m.free; i != 0; i = m.slot(i).next {
		if m.slot(i).rec != "" || m.slot(i).expires != 0 {
			t.Fatalf("free slot %d holds a record", i)
		}
		if free++; free > int(m.used) {
			t.Fatal("free list has a cycle")
		}
	}
	if 1+n+free != int(m.used) {
		t.Fatalf("%d slots used: 1 sentinel, %d records, %d free", m.used, n, free)
	}
}

// keys lists the store's keys from most to least recently used.
func (m *Memory) keys() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ks []string
	for i := m.slot(0).next; i != 0; i = m.slot(i).next {
		k, _ := splitRec(m.slot(i).rec)
		ks = append(ks, k)
	}
	return ks
}

func TestMemoryDefaults(t *testing.T) {
	for _, cfg := range []MemoryConfig{{}, {Capacity: -1, MaxBytes: -1}} {
		m := NewMemory(cfg)
		if m.capacity != DefaultMemoryCapacity || m.maxBytes != DefaultMemoryMaxBytes || m.now == nil {
			t.Errorf("NewMemory(%+v): capacity %d, maxBytes %d", cfg, m.capacity, m.maxBytes)
		}
	}
	if DefaultMemoryCapacity != 10000 || DefaultMemoryMaxBytes != 64<<20 {
		t.Errorf("defaults changed: %d, %d", DefaultMemoryCapacity, DefaultMemoryMaxBytes)
	}
}

func TestMemoryIndexSize(t *testing.T) {
	for _, tc := range []struct{ capacity, index int }{
		{1, 8}, {3, 8}, {4, 16}, {10000, 32768}, {1 << 20, 1 << 21}, {1<<20 - 1, 1 << 21},
		{1 << 30, maxIndexPrealloc}, {math.MaxInt, maxIndexPrealloc},
	} {
		m := NewMemory(MemoryConfig{Capacity: tc.capacity})
		if len(m.index) != tc.index || m.capacity > maxSlots-2 {
			t.Errorf("Capacity %d: index of %d, want %d; capacity %d", tc.capacity, len(m.index), tc.index, m.capacity)
		}
	}
}

// op is one step of a table-driven scenario.
type op struct {
	do      string // "put", "get", "del", "advance"
	key     string
	value   string        // put: value; get: expected value
	ttl     time.Duration // put: ttl; advance: duration
	wantErr error         // expected error (errors.Is), nil for success
}

func put(k, v string, ttl time.Duration) op { return op{do: "put", key: k, value: v, ttl: ttl} }
func get(k, v string) op                    { return op{do: "get", key: k, value: v} }
func miss(k string) op                      { return op{do: "get", key: k, wantErr: ErrNotFound} }
func del(k string) op                       { return op{do: "del", key: k} }
func advance(d time.Duration) op            { return op{do: "advance", ttl: d} }

func run(t *testing.T, m *Memory, clock *fakeClock, ops []op) {
	t.Helper()
	ctx := context.Background()
	for i, o := range ops {
		var err error
		switch o.do {
		case "put":
			err = m.Put(ctx, []byte(o.key), []byte(o.value), o.ttl)
		case "get":
			var v []byte
			v, err = m.Get(ctx, []byte(o.key))
			if err == nil && string(v) != o.value {
				t.Fatalf("step %d: Get(%q) = %q, want %q", i, o.key, v, o.value)
			}
		case "del":
			err = m.Delete(ctx, []byte(o.key))
		case "advance":
			clock.Advance(o.ttl)
		default:
			t.Fatalf("step %d: bad op %q", i, o.do)
		}
		if o.wantErr == nil && err != nil || o.wantErr != nil && !errors.Is(err, o.wantErr) {
			t.Fatalf("step %d: %s(%q): err = %v, want %v", i, o.do, o.key, err, o.wantErr)
		}
		m.check(t)
	}
}

func TestMemoryRoundTrip(t *testing.T) {
	const h = time.Hour
	tests := []struct {
		name string
		ops  []op
		keys []string // expected keys afterwards, most recent first
	}{
		{"empty get", []op{miss("a")}, nil},
		{"put get", []op{put("a", "1", h), get("a", "1")}, []string{"a"}},
		{"put delete get", []op{put("a", "1", h), del("a"), miss("a")}, nil},
		{"delete absent", []op{del("a"), put("b", "2", h), del("a"), get("b", "2")}, []string{"b"}},
		{"overwrite", []op{put("a", "1", h), put("a", "22", h), get("a", "22")}, []string{"a"}},
		{"overwrite shrinks", []op{put("a", "long value", h), put("a", "", h), get("a", "")}, []string{"a"}},
		{"empty key", []op{put("", "v", h), get("", "v"), miss("x")}, []string{""}},
		{"several", []op{put("a", "1", h), put("b", "2", h), put("c", "3", h), del("b"),
			get("a", "1"), miss("b"), get("c", "3")}, []string{"c", "a"}},
		{"binary key", []op{put("\x00\xff", "x", h), miss("\x00"), get("\x00\xff", "x")}, []string{"\x00\xff"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			m := NewMemory(MemoryConfig{Now: clock.Now})
			run(t, m, clock, tt.ops)
			if got := m.keys(); strings.Join(got, ",") != strings.Join(tt.keys, ",") {
				t.Errorf("keys = %q, want %q", got, tt.keys)
			}
		})
	}
}

func TestMemoryGetReturnsNonNil(t *testing.T) {
	m := NewMemory(MemoryConfig{})
	ctx := context.Background()
	if err := m.Put(ctx, []byte("k"), nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	v, err := m.Get(ctx, []byte("k"))
	if err != nil || v == nil || len(v) != 0 {
		t.Fatalf("Get = %v (nil %t), %v; want empty non-nil", v, v == nil, err)
	}
}

func TestMemoryExpiry(t *testing.T) {
	const ttl = 10 * time.Second
	tests := []struct {
		name        string
		after       time.Duration
		wantFound   bool
		wantExpired uint64
	}{
		{"fresh", 0, true, 0},
		{"1ns before deadline", ttl - time.Nanosecond, true, 0},
		{"at deadline", ttl, false, 1},
		{"after deadline", ttl + time.Hour, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			m := NewMemory(MemoryConfig{Now: clock.Now})
			ctx := context.Background()
			if err := m.Put(ctx, []byte("k"), []byte("v"), ttl); err != nil {
				t.Fatal(err)
			}
			clock.Advance(tt.after)
			v, err := m.Get(ctx, []byte("k"))
			if tt.wantFound {
				if err != nil || string(v) != "v" {
					t.Fatalf("Get = %q, %v; want v", v, err)
				}
			} else if !errors.Is(err, ErrNotFound) || v != nil {
				t.Fatalf("Get = %q, %v; want ErrNotFound", v, err)
			}
			st := m.Stats()
			if st.Expired != tt.wantExpired {
				t.Errorf("Expired = %d, want %d", st.Expired, tt.wantExpired)
			}
			if wantLen := map[bool]int{true: 1, false: 0}[tt.wantFound]; m.Len() != wantLen {
				t.Errorf("Len = %d, want %d (expired entries go on Get)", m.Len(), wantLen)
			}
			m.check(t)
		})
	}
}

func TestMemoryExpiryScenarios(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name        string
		ops         []op
		keys        []string
		wantExpired uint64
	}{
		{"overwrite renews lifetime", []op{put("a", "1", 5*s), advance(4 * s), put("a", "2", 5*s),
			advance(4 * s), get("a", "2"), advance(s), miss("a")}, nil, 1},
		{"overwrite can shorten lifetime", []op{put("a", "1", time.Hour), put("a", "2", s), advance(s), miss("a")}, nil, 1},
		{"get does not renew", []op{put("a", "1", 2*s), advance(s), get("a", "1"), advance(s), miss("a")}, nil, 1},
		{"put reaps expired LRU tail", []op{put("a", "1", s), put("b", "2", time.Hour), advance(2 * s),
			put("c", "3", time.Hour)}, []string{"c", "b"}, 1},
		{"put reaps at most two", []op{put("a", "1", s), put("b", "2", s), put("c", "3", s), advance(s),
			put("d", "4", time.Hour)}, []string{"d", "c"}, 2},
		{"reap stops at live tail", []op{put("a", "1", time.Hour), put("b", "2", s), advance(s),
			put("c", "3", time.Hour)}, []string{"c", "b", "a"}, 0},
		{"delete expired", []op{put("a", "1", s), advance(s), del("a"), miss("a")}, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			m := NewMemory(MemoryConfig{Now: clock.Now})
			run(t, m, clock, tt.ops)
			if got := m.keys(); strings.Join(got, ",") != strings.Join(tt.keys, ",") {
				t.Errorf("keys = %q, want %q", got, tt.keys)
			}
			if got := m.Stats().Expired; got != tt.wantExpired {
				t.Errorf("Expired = %d, want %d", got, tt.wantExpired)
			}
		})
	}
}

func TestMemoryLRU(t *testing.T) {
	const h = time.Hour
	tests := []struct {
		name          string
		cfg           MemoryConfig
		ops           []op
		keys          []string // most recent first
		wantEvictions uint64
		wantExpired   uint64
	}{
		{
			name: "capacity evicts least recent",
			cfg:  MemoryConfig{Capacity: 3},
			ops:  []op{put("a", "1", h), put("b", "2", h), put("c", "3", h), put("d", "4", h), miss("a")},
			keys: []string{"d", "c", "b"}, wantEvictions: 1,
		},
		{
			name: "capacity: get refreshes",
			cfg:  MemoryConfig{Capacity: 3},
			ops: []op{put("a", "1", h), put("b", "2", h), put("c", "3", h), get("a", "1"),
				put("d", "4", h), miss("b"), get("a", "1")},
			keys: []string{"a", "d", "c"}, wantEvictions: 1,
		},
		{
			name: "capacity: overwrite refreshes, evicts nothing",
			cfg:  MemoryConfig{Capacity: 3},
			ops: []op{put("a", "1", h), put("b", "2", h), put("c", "3", h), put("a", "9", h),
				put("d", "4", h)},
			keys: []string{"d", "a", "c"}, wantEvictions: 1,
		},
		{
			name: "capacity: a miss does not refresh",
			cfg:  MemoryConfig{Capacity: 2},
			ops:  []op{put("a", "1", h), put("b", "2", h), miss("z"), put("c", "3", h)},
			keys: []string{"c", "b"}, wantEvictions: 1,
		},
		{
			name: "capacity one",
			cfg:  MemoryConfig{Capacity: 1},
			ops:  []op{put("a", "1", h), put("b", "2", h), miss("a"), get("b", "2")},
			keys: []string{"b"}, wantEvictions: 1,
		},
		{
			name: "capacity: expired tail counted as expired, not evicted",
			cfg:  MemoryConfig{Capacity: 4},
			// The reaper takes a and b; c, still live, stops it.
			ops: []op{put("a", "1", time.Second), put("b", "2", time.Second), put("c", "3", h),
				put("e", "5", time.Second), advance(time.Second), put("f", "6", h)},
			keys: []string{"f", "e", "c"}, wantEvictions: 0, wantExpired: 2,
		},
		{
			name: "max bytes evicts least recent",
			cfg:  MemoryConfig{MaxBytes: 10}, // each record "k"+"xxxx" is 5 bytes
			ops:  []op{put("a", "1111", h), put("b", "2222", h), put("c", "3333", h), miss("a")},
			keys: []string{"c", "b"}, wantEvictions: 1,
		},
		{
			name: "max bytes: get refreshes",
			cfg:  MemoryConfig{MaxBytes: 10},
			ops:  []op{put("a", "1111", h), put("b", "2222", h), get("a", "1111"), put("c", "3333", h), miss("b")},
			keys: []string{"c", "a"}, wantEvictions: 1,
		},
		{
			name: "max bytes: a big record evicts several",
			cfg:  MemoryConfig{MaxBytes: 10},
			ops:  []op{put("a", "1", h), put("b", "2", h), put("c", "3", h), get("a", "1"), put("d", "1234567", h)},
			keys: []string{"d", "a"}, wantEvictions: 2,
		},
		{
			name: "max bytes: growing overwrite evicts others",
			cfg:  MemoryConfig{MaxBytes: 10},
			ops:  []op{put("a", "1", h), put("b", "2", h), put("a", "12345678", h), miss("b")},
			keys: []string{"a"}, wantEvictions: 1,
		},
		{
			name: "max bytes: record of exactly MaxBytes fits alone",
			cfg:  MemoryConfig{MaxBytes: 10},
			ops:  []op{put("a", "1", h), put("b", "123456789", h), get("b", "123456789")},
			keys: []string{"b"}, wantEvictions: 1,
		},
		{
			name: "max bytes: oversized record refused, store unchanged",
			cfg:  MemoryConfig{MaxBytes: 10},
			ops: []op{put("a", "1", h), put("b", "2", h),
				{do: "put", key: "a", value: "1234567890", ttl: h, wantErr: ErrTooLarge}, get("a", "1")},
			keys: []string{"a", "b"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			tt.cfg.Now = clock.Now
			m := NewMemory(tt.cfg)
			run(t, m, clock, tt.ops)
			if got := m.keys(); strings.Join(got, ",") != strings.Join(tt.keys, ",") {
				t.Errorf("keys = %q, want %q", got, tt.keys)
			}
			st := m.Stats()
			if st.Evictions != tt.wantEvictions || st.Expired != tt.wantExpired {
				t.Errorf("Evictions, Expired = %d, %d; want %d, %d", st.Evictions, st.Expired, tt.wantEvictions, tt.wantExpired)
			}
		})
	}
}

func TestMemoryPutErrors(t *testing.T) {
	tests := []struct {
		name    string
		key     string
		value   string
		ttl     time.Duration
		wantErr error
		wantMsg string
	}{
		{"zero ttl", "k", "v", 0, ErrInvalidTTL, "store: Put: ttl must be positive"},
		{"negative ttl", "k", "v", -time.Second, ErrInvalidTTL, "store: Put: ttl must be positive"},
		{"value too large", "k", strings.Repeat("x", 16), time.Hour, ErrTooLarge,
			"store: Put: record of 17 bytes exceeds MaxBytes 16: store: record too large"},
		{"key too large", strings.Repeat("k", 17), "", time.Hour, ErrTooLarge,
			"store: Put: record of 17 bytes exceeds MaxBytes 16: store: record too large"},
		{"exactly MaxBytes", "k", strings.Repeat("x", 15), time.Hour, nil, ""},
		{"smallest ttl", "k", "v", time.Nanosecond, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMemory(MemoryConfig{MaxBytes: 16})
			err := m.Put(context.Background(), []byte(tt.key), []byte(tt.value), tt.ttl)
			if !errors.Is(err, tt.wantErr) || tt.wantErr == nil && err != nil {
				t.Fatalf("Put: %v, want %v", err, tt.wantErr)
			}
			if err != nil && err.Error() != tt.wantMsg {
				t.Errorf("message %q, want %q", err.Error(), tt.wantMsg)
			}
			if wantLen := map[bool]int{true: 0, false: 1}[err != nil]; m.Len() != wantLen {
				t.Errorf("Len = %d, want %d", m.Len(), wantLen)
			}
			m.check(t)
		})
	}
}

// TestMemoryIndex runs random Puts, Gets and Deletes against a map, in a
// store whose index starts at 8 positions: lookups probe past collisions,
// deletions shift records back, and the index grows several times.
func TestMemoryIndex(t *testing.T) {
	const keySpace = 700
	m := NewMemory(MemoryConfig{Capacity: keySpace})
	m.index = make([]uint64, 8)
	want := map[string]string{}
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 2))
	for step := range 30000 {
		key := fmt.Sprintf("k%d", r.IntN(keySpace))
		switch r.IntN(3) {
		case 0:
			v := fmt.Sprintf("v%d", step)
			if err := m.Put(ctx, []byte(key), []byte(v), time.Hour); err != nil {
				t.Fatal(err)
			}
			want[key] = v
		case 1:
			v, err := m.Get(ctx, []byte(key))
			if w, ok := want[key]; ok != (err == nil) || string(v) != w {
				t.Fatalf("step %d: Get(%s) = %q, %v; want %q", step, key, v, err, w)
			}
		case 2:
			if err := m.Delete(ctx, []byte(key)); err != nil {
				t.Fatal(err)
			}
			delete(want, key)
		}
		if step%500 == 0 {
			m.check(t)
		}
	}
	m.check(t)
	if m.Len() != len(want) || len(m.index) < 2*len(want) {
		t.Errorf("%d records (want %d), index of %d", m.Len(), len(want), len(m.index))
	}
	st := m.Stats()
	if st.Evictions != 0 || st.Expired != 0 {
		t.Errorf("records lost: %+v", st)
	}
}

// TestMemoryLongTTL: a lifetime beyond the int64 nanosecond clock means
// never, not the past.
func TestMemoryLongTTL(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(MemoryConfig{Now: clock.Now})
	ctx := context.Background()
	if err := m.Put(ctx, []byte("k"), []byte("v"), time.Duration(math.MaxInt64)); err != nil {
		t.Fatal(err)
	}
	clock.Advance(100 * 365 * 24 * time.Hour)
	if v, err := m.Get(ctx, []byte("k")); err != nil || string(v) != "v" {
		t.Errorf("Get = %q, %v", v, err)
	}
}

func TestMemoryStats(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(MemoryConfig{Capacity: 2, Now: clock.Now})
	const h = time.Hour
	run(t, m, clock, []op{
		put("a", "11", h),          // 3 bytes, expires at h
		put("bb", "2222", 2*h),     // 6 bytes
		get("a", "11"),             // hit; bb is now least recent
		miss("zz"),                 // miss
		put("c", "3", h),           // 2 bytes, expires at h; evicts live bb
		miss("bb"),                 // miss
		advance(h),                 // a and c expire
		miss("a"),                  // miss; a removed as expired
		put("bb", "22", time.Hour), // 4 bytes; reaps c, now the tail
	})
	want := MemoryStats{Entries: 1, Bytes: 4, Hits: 1, Misses: 3, Evictions: 1, Expired: 2}
	if got := m.Stats(); got != want {
		t.Errorf("Stats = %+v\nwant    %+v", got, want)
	}
	if m.Len() != want.Entries {
		t.Errorf("Len = %d, want %d", m.Len(), want.Entries)
	}
}

func TestMemoryBufferReuse(t *testing.T) {
	ctx := context.Background()
	m := NewMemory(MemoryConfig{})
	key := []byte("key-0")
	val := []byte("value-0")
	for i := range 3 {
		key[len(key)-1] = byte('0' + i)
		val[len(val)-1] = byte('0' + i)
		if err := m.Put(ctx, key, val, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	// Scribble over the caller's buffers after the last Put.
	copy(key, "XXXXX")
	copy(val, "YYYYYYY")
	for i := range 3 {
		k := []byte(fmt.Sprintf("key-%d", i))
		v, err := m.Get(ctx, k)
		if err != nil || string(v) != fmt.Sprintf("value-%d", i) {
			t.Fatalf("Get(%s) = %q, %v", k, v, err)
		}
		// Modifying what Get returned must not reach the store.
		for j := range v {
			v[j] = 'Z'
		}
		k[0] = 'Q' // nor modifying the key used to look up
		v2, err := m.Get(ctx, []byte(fmt.Sprintf("key-%d", i)))
		if err != nil || string(v2) != fmt.Sprintf("value-%d", i) {
			t.Fatalf("second Get = %q, %v", v2, err)
		}
	}
	if _, err := m.Get(ctx, []byte("XXXXX")); !errors.Is(err, ErrNotFound) {
		t.Errorf("scribbled key found: %v", err)
	}
	m.check(t)
}

func TestMemoryContextDone(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Unix(0, 0))
	defer cancel2()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want error
	}{
		{"cancelled", cancelled, context.Canceled},
		{"deadline exceeded", expired, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMemory(MemoryConfig{})
			bg := context.Background()
			if err := m.Put(bg, []byte("k"), []byte("v"), time.Hour); err != nil {
				t.Fatal(err)
			}
			if v, err := m.Get(tc.ctx, []byte("k")); err != tc.want || v != nil {
				t.Errorf("Get = %q, %v; want %v", v, err, tc.want)
			}
			if err := m.Put(tc.ctx, []byte("k2"), []byte("v"), time.Hour); err != tc.want {
				t.Errorf("Put: %v, want %v", err, tc.want)
			}
			// ctx is checked before ttl.
			if err := m.Put(tc.ctx, []byte("k2"), []byte("v"), 0); err != tc.want {
				t.Errorf("Put with bad ttl: %v, want %v", err, tc.want)
			}
			if err := m.Delete(tc.ctx, []byte("k")); err != tc.want {
				t.Errorf("Delete: %v, want %v", err, tc.want)
			}
			// Nothing changed, nothing counted.
			if st := m.Stats(); st != (MemoryStats{Entries: 1, Bytes: 2}) {
				t.Errorf("Stats = %+v", st)
			}
			if v, err := m.Get(bg, []byte("k")); err != nil || string(v) != "v" {
				t.Errorf("Get after = %q, %v", v, err)
			}
		})
	}
}

func TestMemoryConcurrent(t *testing.T) {
	clock := newFakeClock()
	m := NewMemory(MemoryConfig{Capacity: 200, MaxBytes: 200 * 40, Now: clock.Now})
	const (
		goroutines = 64
		opsEach    = 2000
		keySpace   = 500
	)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			key := make([]byte, 0, 16)
			val := make([]byte, 0, 64)
			for range opsEach {
				k := r.IntN(keySpace)
				key = fmt.Appendf(key[:0], "k%d", k)
				switch p := r.IntN(100); {
				case p < 45:
					// The value is derived from the key, so any hit can be checked.
					val = fmt.Appendf(val[:0], "value-of-%d-%s", k, bytes.Repeat([]byte{'x'}, r.IntN(32)))
					if err := m.Put(ctx, key, val, time.Duration(1+r.IntN(5))*time.Second); err != nil {
						t.Error(err)
						return
					}
				case p < 90:
					v, err := m.Get(ctx, key)
					if err == nil && !bytes.HasPrefix(v, fmt.Appendf(nil, "value-of-%d-", k)) {
						t.Errorf("Get(%s) = %q", key, v)
						return
					} else if err != nil && !errors.Is(err, ErrNotFound) {
						t.Error(err)
						return
					}
				case p < 98:
					if err := m.Delete(ctx, key); err != nil {
						t.Error(err)
						return
					}
				case p < 99:
					clock.Advance(time.Second)
				default:
					_ = m.Stats()
					_ = m.Len()
				}
			}
		}()
	}
	wg.Wait()
	m.check(t)
	st := m.Stats()
	if st.Hits+st.Misses == 0 || st.Evictions == 0 && st.Expired == 0 {
		t.Errorf("implausible stats after the run: %+v", st)
	}
	t.Logf("%+v", st)
}

// BenchmarkMemoryGetPut measures, in parallel, one Put and one Get on random
// keys of a 64k key space in a store of the default capacity (10000), so the
// run sees hits, misses and evictions. Before that it estimates the heap cost
// of a record: bytes/entry is the heap growth per record after inserting 100k
// records of a 32-byte key and a 150-byte value, and overhead-bytes/entry the
// part of it beyond those 182 bytes of payload.
func BenchmarkMemoryGetPut(b *testing.B) {
	const (
		n      = 100_000
		keyLen = 32
		valLen = 150
	)
	perEntryOnce.Do(func() { perEntry = bytesPerEntry(n, keyLen, valLen) })

	m := NewMemory(MemoryConfig{})
	ctx := context.Background()
	const keySpace = 1 << 16
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
		key := make([]byte, keyLen)
		val := make([]byte, valLen)
		for pb.Next() {
			k := r.Uint64() % keySpace
			for i := range 8 {
				key[i] = byte(k >> (8 * i))
			}
			if err := m.Put(ctx, key, val, time.Hour); err != nil {
				b.Error(err)
				return
			}
			k = r.Uint64() % keySpace
			for i := range 8 {
				key[i] = byte(k >> (8 * i))
			}
			if _, err := m.Get(ctx, key); err != nil && !errors.Is(err, ErrNotFound) {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	// After the run: ResetTimer discards metrics reported before it.
	b.ReportMetric(perEntry, "bytes/entry")
	b.ReportMetric(perEntry-keyLen-valLen, "overhead-bytes/entry")
}

var (
	perEntryOnce sync.Once
	perEntry     float64
)

// bytesPerEntry returns the heap growth per record of a Memory store holding
// n records of keyLen-byte keys and valLen-byte values.
func bytesPerEntry(n, keyLen, valLen int) float64 {
	ctx := context.Background()
	key := make([]byte, keyLen)
	val := make([]byte, valLen)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m := NewMemory(MemoryConfig{Capacity: n})
	for i := range n {
		for j := range 8 {
			key[j] = byte(i >> (8 * j))
		}
		if err := m.Put(ctx, key, val, time.Hour); err != nil {
			panic(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if m.Len() != n {
		panic("records lost")
	}
	runtime.KeepAlive(m)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}
