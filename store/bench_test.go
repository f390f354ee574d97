package store

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	mrand "math/rand/v2"
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

// BenchmarkMemoryMillionSessions fills one Memory store with a million
// records shaped like the engine's and measures what each costs and how
// fast Get and Put are at that size:
//
//	go test -run '^$' -bench MemoryMillionSessions ./store
//
// Two kinds of server-side record, one store of a million each:
// session_id ("sid/" + 32-byte session ID, the session's StatePlaintext,
// ~100 bytes) and client_state ("csh/" + 16-byte handle, a
// ClientStateRecord holding the client's sealed ticket and the server's
// StatePlaintext, ~230 bytes). Get reports, per record: bytes/session (heap
// growth after GC, divided by the number of records), payload-bytes/session
// (key plus value) and overhead-bytes/session (the difference). Get reads
// random records of the full store; Put stores new sessions into it, each
// evicting the least recently used one (the steady state of a full gateway).
// It takes several seconds and up to 1 GB of heap.
func BenchmarkMemoryMillionSessions(b *testing.B) {
	const n = 1_000_000
	for _, kind := range []struct {
		name   string
		prefix string
		idLen  int
		value  []byte
	}{
		{"session_id", "sid/", 32, benchSessionIDValue(b)},
		{"client_state", "csh/", negotiation.HandleSize, benchClientStateValue(b)},
	} {
		b.Run(kind.name, func(b *testing.B) {
			keyLen := len(kind.prefix) + kind.idLen
			// The IDs are allocated before the baseline: they are the
			// benchmark's, not the store's.
			ids := make([]byte, n*kind.idLen)
			rand.Read(ids)
			key := func(buf []byte, i int) []byte {
				buf = append(buf[:0], kind.prefix...)
				return append(buf, ids[i*kind.idLen:(i+1)*kind.idLen]...)
			}
			ctx := context.Background()
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			m := NewMemory(MemoryConfig{Capacity: n, MaxBytes: n * 512})
			buf := make([]byte, 0, keyLen)
			for i := range n {
				if err := m.Put(ctx, key(buf, i), kind.value, 24*time.Hour); err != nil {
					b.Fatal(err)
				}
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			if st := m.Stats(); st.Entries != n || st.Evictions != 0 {
				b.Fatalf("store lost records while filling: %+v", st)
			}
			perSession := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
			payload := float64(keyLen + len(kind.value))

			b.Run("Get", func(b *testing.B) {
				r := mrand.New(mrand.NewPCG(1, 2))
				buf := make([]byte, 0, keyLen)
				b.ReportAllocs()
				for b.Loop() {
					if _, err := m.Get(ctx, key(buf, r.IntN(n))); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(perSession, "bytes/session")
				b.ReportMetric(payload, "payload-bytes/session")
				b.ReportMetric(perSession-payload, "overhead-bytes/session")
			})
			b.Run("Put", func(b *testing.B) {
				// New sessions: random IDs that are not in the store.
				k := make([]byte, keyLen)
				copy(k, kind.prefix)
				rand.Read(k[len(kind.prefix):])
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					binary.BigEndian.PutUint64(k[len(kind.prefix):], uint64(i))
					if err := m.Put(ctx, k, kind.value, 24*time.Hour); err != nil {
						b.Fatal(err)
					}
				}
				if m.Len() != n {
					b.Fatalf("%d records, want %d", m.Len(), n)
				}
			})
			runtime.KeepAlive(m)
		})
	}
}

// benchState returns the server's StatePlaintext of a PSK client session,
// as the engine builds it.
func benchState(typ negotiation.Type) *ticketfmt.State {
	now := time.Now()
	st := &ticketfmt.State{Version: 0xfefd, CipherSuite: uint16(dtls.TLS_PSK_WITH_AES_128_CCM_8), Timestamp: now,
		SessionCreated: now, Lifetime: 24 * time.Hour, ExtendedMasterSecret: true, ResumptionType: uint8(typ),
		Peer: ticketfmt.PeerIdentity{Type: ticketfmt.PSK, PSKIdentity: []byte("device-0001234")}}
	rand.Read(st.MasterSecret[:])
	return st
}

// benchSessionIDValue is the value of a session-ID record: the session's
// StatePlaintext.
func benchSessionIDValue(b *testing.B) []byte {
	v, err := benchState(negotiation.SessionID).Marshal()
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// benchClientStateValue is the value of a client_state record (dtls
// client_state.go): version 1, the client's ticket (its own state, naming
// the server by PSK identity hint and dialled address, sealed under its
// key) and the server's StatePlaintext, each with a 16-bit length.
func benchClientStateValue(b *testing.B) []byte {
	client := benchState(negotiation.ClientState)
	client.Peer = ticketfmt.PeerIdentity{Type: ticketfmt.PSK, PSKIdentity: []byte("gateway-17")}
	client.ServerName = "gw.example.net:5684"
	plain, err := client.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	var secret [ticketfmt.KeySize]byte
	k, err := ticketfmt.NewKey(secret[:])
	if err != nil {
		b.Fatal(err)
	}
	ticket, err := k.Seal(plain, ticketfmt.LabelClient)
	if err != nil {
		b.Fatal(err)
	}
	server, err := benchState(negotiation.ClientState).Marshal()
	if err != nil {
		b.Fatal(err)
	}
	v := []byte{1}
	v = binary.BigEndian.AppendUint16(v, uint16(len(ticket)))
	v = append(v, ticket...)
	v = binary.BigEndian.AppendUint16(v, uint16(len(server)))
	return append(v, server...)
}
