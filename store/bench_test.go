package store

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/negotiation"
	"github.com/dtlsresume/dtlsresume/ticketfmt"
)

// Benchmarks of the store operations of each backend with records the size
// of a real session, of resumption through each backend, and the bytes each
// backend keeps per session:
//
//	go test -run '^$' -bench 'Store|Resumption' ./store
//
// bytes/session is what the backend keeps for one session-ID record
// ("sid/" + 32-byte ID, and the session's StatePlaintext): heap bytes for
// memory (and for the file store's in-memory index), bytes on disk for the
// file store, and Redis's MEMORY USAGE for Redis.

// sessionRecord returns a store key and value shaped as the engine's
// session-ID records.
func sessionRecord(i int) (key, value []byte) {
	key = make([]byte, 4+32)
	copy(key, "sid/")
	rand.Read(key[4:])
	binary.BigEndian.PutUint64(key[4:], uint64(i))
	st := &ticketfmt.State{Version: 0xfefd, CipherSuite: 0xc0a8, Timestamp: time.Now(), SessionCreated: time.Now(),
		Lifetime: 24 * time.Hour, ExtendedMasterSecret: true, ResumptionType: uint8(negotiation.SessionID),
		Peer: ticketfmt.PeerIdentity{Type: ticketfmt.PSK, PSKIdentity: []byte("client1")}}
	rand.Read(st.MasterSecret[:])
	value, err := st.Marshal()
	if err != nil {
		panic(err)
	}
	return key, value
}

const benchRecords = 10000

// fill puts benchRecords records and returns their keys.
func fill(b *testing.B, s Store) [][]byte {
	b.Helper()
	keys := make([][]byte, benchRecords)
	ctx := context.Background()
	for i := range keys {
		k, v := sessionRecord(i)
		if err := s.Put(ctx, k, v, time.Hour); err != nil {
			b.Fatal(err)
		}
		keys[i] = k
	}
	return keys
}

func benchGet(b *testing.B, s Store) {
	keys := fill(b, s)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := s.Get(ctx, keys[i%len(keys)]); err != nil {
			b.Fatal(err)
		}
	}
}

func benchPut(b *testing.B, s Store) {
	ctx := context.Background()
	k, v := sessionRecord(0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		binary.BigEndian.PutUint64(k[4:], uint64(i%benchRecords))
		if err := s.Put(ctx, k, v, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}

// heapPerSession is the heap growth per record of fill on a fresh store.
func heapPerSession(b *testing.B, mk func() Store) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := mk()
	fill(b, s)
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(s)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / benchRecords
}

func newBenchMemory() Store { return NewMemory(MemoryConfig{}) }

func BenchmarkStoreMemoryGet(b *testing.B) {
	perSession := heapPerSession(b, newBenchMemory)
	benchGet(b, newBenchMemory())
	b.ReportMetric(perSession, "bytes/session")
}

func BenchmarkStoreMemoryPut(b *testing.B) {
	benchPut(b, newBenchMemory())
}

func newBenchFile(b *testing.B, noSync bool) *File {
	f, err := NewFile(filepath.Join(b.TempDir(), fmt.Sprint("s", time.Now().UnixNano())), testStoreKey,
		FileConfig{NoSync: noSync, CompactMinBytes: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return f
}

func BenchmarkStoreFileGet(b *testing.B) {
	f := newBenchFile(b, true)
	// Heap of the in-memory index, and bytes on disk, per session.
	ram := heapPerSession(b, func() Store { return newBenchFile(b, true) })
	benchGet(b, f)
	info, err := os.Stat(f.path)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(info.Size()-int64(fileHeaderSize))/benchRecords, "disk-bytes/session")
	b.ReportMetric(ram, "bytes/session")
}

// BenchmarkStoreFilePut fsyncs every Put (the default).
func BenchmarkStoreFilePut(b *testing.B) {
	benchPut(b, newBenchFile(b, false))
}

// BenchmarkStoreFilePutNoSync is Put without fsync (FileConfig.NoSync).
func BenchmarkStoreFilePutNoSync(b *testing.B) {
	benchPut(b, newBenchFile(b, true))
}

// BenchmarkStoreFilePutParallel: concurrent Puts share fsyncs.
func BenchmarkStoreFilePutParallel(b *testing.B) {
	f := newBenchFile(b, false)
	ctx := context.Background()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		k, v := sessionRecord(0)
		for i := 0; pb.Next(); i++ {
			binary.BigEndian.PutUint64(k[4:], uint64(i%benchRecords))
			if err := f.Put(ctx, k, v, time.Hour); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func benchRedis(b *testing.B, key []byte) *Redis {
	srv := startRedis(b)
	return newTestRedis(b, srv, RedisConfig{Key: key, Timeout: time.Second})
}

func redisBytesPerSession(b *testing.B, r *Redis, keys [][]byte) float64 {
	var sum int64
	const n = 100
	for _, k := range keys[:n] {
		u, err := r.MemoryUsage(context.Background(), k)
		if err != nil {
			b.Fatal(err)
		}
		sum += u
	}
	return float64(sum) / n
}

func BenchmarkStoreRedisGet(b *testing.B) {
	for _, enc := range []struct {
		name string
		key  []byte
	}{{"plain", nil}, {"encrypted", testStoreKey}} {
		b.Run(enc.name, func(b *testing.B) {
			r := benchRedis(b, enc.key)
			keys := fill(b, r)
			perSession := redisBytesPerSession(b, r, keys)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				if _, err := r.Get(ctx, keys[i%len(keys)]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(perSession, "bytes/session")
		})
	}
}

func BenchmarkStoreRedisPut(b *testing.B) {
	benchPut(b, benchRedis(b, nil))
}

// BenchmarkResumption measures complete abbreviated handshakes (and an
// echo) on loopback through each backend and each resumption type, and
// reports what each side keeps per session as the engine counts it (the
// store record's key and value on the server; tickets cost the server
// nothing, client_state costs the client nothing). What a backend spends
// to keep those bytes is in the BenchmarkStore* bytes/session metrics.
func BenchmarkResumption(b *testing.B) {
	backends := []struct {
		name string
		open func(b *testing.B) (Store, *ticketfmt.KeyRing)
	}{
		{"memory", func(b *testing.B) (Store, *ticketfmt.KeyRing) { return NewMemory(MemoryConfig{}), nil }},
		{"file", func(b *testing.B) (Store, *ticketfmt.KeyRing) {
			f := newBenchFile(b, false)
			pr, err := FileKeyRing(f, ticketfmt.KeyRingConfig{}, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { pr.Close() })
			return f, pr.Ring
		}},
		{"redis", func(b *testing.B) (Store, *ticketfmt.KeyRing) {
			r := benchRedis(b, testStoreKey)
			ring, ks, err := SharedKeyRing(context.Background(), r, ticketfmt.KeyRingConfig{}, KeySyncConfig{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(ks.Stop)
			return r, ring
		}},
	}
	for _, be := range backends {
		for _, typ := range []negotiation.Type{negotiation.SessionID, negotiation.SessionTicket, negotiation.ClientState} {
			b.Run(be.name+"/"+typ.String(), func(b *testing.B) {
				s, ring := be.open(b)
				cfg := serverConfig()
				cfg.SessionStore = s
				cfg.TicketKeys = ring
				var serverKept atomic.Int64
				cfg.HandshakeObserver = func(st dtls.ConnectionState, err error) {
					if err == nil {
						serverKept.Store(int64(st.ResumptionStateBytes))
					}
				}
				l, _ := startListener(b, cfg)
				c := newResumptionClient(typ)
				c.expectFull(b, l.Addr())
				var clientKept int
				b.ResetTimer()
				for b.Loop() {
					st := c.dial(b, l.Addr())
					if !st.Resumed {
						b.Fatal("not resumed")
					}
					clientKept = st.ResumptionStateBytes
				}
				b.StopTimer()
				time.Sleep(10 * time.Millisecond) // the server's observer runs after the client is done
				b.ReportMetric(float64(serverKept.Load()), "server-bytes/session")
				b.ReportMetric(float64(clientKept), "client-bytes/session")
			})
		}
	}
}
