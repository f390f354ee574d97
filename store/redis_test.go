package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/internal/peers"
	"github.com/dtlsresume/dtlsresume/ticketfmt"
	"github.com/redis/go-redis/v9"
)

// redisServer is a real redis-server on a loopback port, for the test.
type redisServer struct {
	t    testing.TB
	bin  string
	port int
	dir  string
	proc *peers.Process
}

// freeTCPPort returns a TCP port that was free on 127.0.0.1 a moment ago.
func freeTCPPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startRedis starts redis-server (from Debian's redis-server package, which
// scripts/test.sh installs) without persistence on a free loopback port.
func startRedis(t testing.TB) *redisServer {
	t.Helper()
	s := &redisServer{t: t, bin: peers.Require(t, "redis-server"), port: freeTCPPort(t), dir: t.TempDir()}
	s.start()
	return s
}

func (s *redisServer) start() {
	s.t.Helper()
	s.proc = peers.Start(s.t, s.bin, "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", s.dir)
	if err := s.proc.WaitFor("Ready to accept connections", 15*time.Second); err != nil {
		s.t.Fatal(err)
	}
}

// stop kills the server (as a crash would) and waits for it to be gone.
func (s *redisServer) stop() {
	s.t.Helper()
	if err := s.proc.Kill(); err != nil {
		s.t.Fatal(err)
	}
	_, _ = s.proc.Wait(10 * time.Second)
}

func (s *redisServer) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.port) }

func (s *redisServer) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", s.port)})
}

func newTestRedis(t testing.TB, srv *redisServer, cfg RedisConfig) *Redis {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := NewRedis(ctx, srv.url(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestRedisStore(t *testing.T) {
	srv := startRedis(t)
	for _, tc := range []struct {
		name string
		key  []byte
	}{{"plain", nil}, {"encrypted", testStoreKey}} {
		t.Run(tc.name, func(t *testing.T) {
			prefix := "test-" + tc.name + ":"
			r := newTestRedis(t, srv, RedisConfig{Prefix: prefix, Key: tc.key})
			ctx := context.Background()
			mustMiss(t, r, "sid/one")
			mustPut(t, r, "sid/one", "master-secret-one", time.Hour)
			mustPut(t, r, "csh/two", "client-state-two", 150*time.Millisecond)
			mustGet(t, r, "sid/one", "master-secret-one")
			mustGet(t, r, "csh/two", "client-state-two")
			if err := r.Delete(ctx, []byte("sid/one")); err != nil {
				t.Fatal(err)
			}
			mustMiss(t, r, "sid/one")
			if err := r.Put(ctx, []byte("k"), []byte("v"), 0); !errors.Is(err, ErrInvalidTTL) {
				t.Errorf("ttl 0: %v", err)
			}
			if err := r.Put(ctx, []byte("k"), make([]byte, DefaultRedisMaxValue+1), time.Hour); !errors.Is(err, ErrTooLarge) {
				t.Errorf("huge value: %v", err)
			}
			// Redis expires records.
			time.Sleep(300 * time.Millisecond)
			mustMiss(t, r, "csh/two")

			// A second client (another server) sees the same records.
			mustPut(t, r, "sid/shared", "s", time.Hour)
			r2 := newTestRedis(t, srv, RedisConfig{Prefix: prefix, Key: tc.key})
			mustGet(t, r2, "sid/shared", "s")

			// What Redis holds.
			c := srv.client()
			defer c.Close()
			keys, err := c.Keys(ctx, prefix+"*").Result()
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != 1 {
				t.Fatalf("redis keys %q", keys)
			}
			raw, _ := c.Get(ctx, keys[0]).Bytes()
			if tc.key == nil {
				if keys[0] != prefix+"s:sid/shared" || string(raw) != "s" {
					t.Errorf("plain store keeps %q = %q", keys[0], raw)
				}
				return
			}
			if strings.Contains(keys[0], "shared") || bytes.Contains(raw, []byte("s")) && len(raw) < sealOverhead {
				t.Errorf("encrypted store keeps %q = %x", keys[0], raw)
			}
			// A value moved under another key does not open.
			if err := c.Set(ctx, r.recordKey([]byte("sid/moved")), raw, time.Hour).Err(); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Get(ctx, []byte("sid/moved")); err == nil || errors.Is(err, ErrNotFound) {
				t.Errorf("moved record: %v", err)
			}
			// Another key cannot read it.
			r3 := newTestRedis(t, srv, RedisConfig{Prefix: prefix, Key: bytes.Repeat([]byte{7}, KeySize)})
			if _, err := r3.Get(ctx, []byte("sid/shared")); err == nil {
				t.Error("read with another key")
			}
		})
	}
	if _, err := NewRedis(context.Background(), "http://nope", RedisConfig{}); err == nil {
		t.Error("bad URL accepted")
	}
	if _, err := NewRedis(context.Background(), srv.url(), RedisConfig{Key: []byte("short")}); err == nil {
		t.Error("short key accepted")
	}
}

// TestRedisFault stops redis-server in the middle of a run: every call
// fails within the store's timeout (never hangs), the shared ticket key ring
// keeps sealing tickets the other server opens, and all works again once
// Redis is back.
func TestRedisFault(t *testing.T) {
	srv := startRedis(t)
	var logs logBuffer
	r := newTestRedis(t, srv, RedisConfig{Timeout: 200 * time.Millisecond, Logger: logs.logger()})
	ringCfg := ticketfmt.KeyRingConfig{Rotation: time.Hour}
	syncCfg := KeySyncConfig{Interval: 100 * time.Millisecond, Logger: logs.logger()}
	ctx := context.Background()
	ringA, syncA, err := SharedKeyRing(ctx, r, ringCfg, syncCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer syncA.Stop()
	rB := newTestRedis(t, srv, RedisConfig{Timeout: 200 * time.Millisecond})
	ringB, syncB, err := SharedKeyRing(ctx, rB, ringCfg, syncCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer syncB.Stop()
	mustPut(t, r, "sid/before", "1", time.Hour)

	// Hung (SIGSTOP): calls time out.
	if err := syscall.Kill(srv.proc.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		start := time.Now()
		_, gerr := r.Get(ctx, []byte("sid/before"))
		perr := r.Put(ctx, []byte(fmt.Sprint("sid/hung", i)), []byte("2"), time.Hour)
		if d := time.Since(start); d > time.Second {
			t.Fatalf("two calls with Redis hung took %v", d)
		}
		if gerr == nil || errors.Is(gerr, ErrNotFound) || perr == nil {
			t.Fatalf("with Redis hung: get %v, put %v", gerr, perr)
		}
	}
	if err := syscall.Kill(srv.proc.Pid(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := r.Get(ctx, []byte("sid/before")); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("not back after SIGCONT: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	srv.stop()
	for i := range 10 {
		start := time.Now()
		_, gerr := r.Get(ctx, []byte("sid/before"))
		perr := r.Put(ctx, []byte(fmt.Sprint("sid/during", i)), []byte("2"), time.Hour)
		derr := r.Delete(ctx, []byte("sid/x"))
		if d := time.Since(start); d > time.Second {
			t.Fatalf("three calls with Redis down took %v", d)
		}
		if gerr == nil || errors.Is(gerr, ErrNotFound) || perr == nil || derr == nil {
			t.Fatalf("with Redis down: get %v, put %v, delete %v", gerr, perr, derr)
		}
	}
	// Tickets still seal and open across the two rings.
	st := &ticketfmt.State{Version: 0xfefd, CipherSuite: 0xc0a8, SessionCreated: time.Now(), Lifetime: time.Hour,
		Peer: ticketfmt.PeerIdentity{Type: ticketfmt.Anonymous}}
	ticket, err := ringA.Seal(st, ticketfmt.LabelServer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ringB.Open(ticket, ticketfmt.LabelServer); err != nil {
		t.Fatalf("ticket while Redis is down: %v", err)
	}
	time.Sleep(300 * time.Millisecond) // a few failed syncs
	if syncA.Stats().Failures == 0 {
		t.Error("no failed sync counted")
	}

	srv.start()
	deadline = time.Now().Add(10 * time.Second)
	for {
		err := r.Put(ctx, []byte("sid/after"), []byte("3"), time.Hour)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store not back 10s after Redis: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mustGet(t, r, "sid/after", "3")
	mustMiss(t, r, "sid/before") // Redis lost its data: a miss, not an error
	// The key schedule is published again, and both rings follow it. (A
	// client that failed to dial many times in a row fails fast until its
	// background probe, once a second, reaches Redis again.)
	for _, s := range []*KeySync{syncA, syncB, syncA} {
		for {
			err := s.SyncNow(ctx)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("key sync not back 10s after Redis: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if a, b := ringA.Keys()[0].Name, ringB.Keys()[0].Name; a != b {
		t.Errorf("after the outage the rings seal with %x and %x", a, b)
	}
	ticket2, err := ringB.Seal(st, ticketfmt.LabelServer)
	if err != nil {
		t.Fatal(err)
	}
	for i, tk := range [][]byte{ticket, ticket2} {
		if _, err := ringA.Open(tk, ticketfmt.LabelServer); err != nil {
			t.Errorf("ticket %d after the outage: %v", i+1, err)
		}
	}
	if !strings.Contains(logs.String(), "works again") {
		t.Errorf("recovery not logged:\n%s", logs.String())
	}
}

// TestKeySyncThreeRings runs three servers' rings (and a fourth that joins
// late) against one Redis under a fake clock, through many rotations, some
// syncs missed: at every step a ticket sealed by any ring opens on every
// other ring, and all rings seal with the same key.
func TestKeySyncThreeRings(t *testing.T) {
	srv := startRedis(t)
	clock := newFakeClock()
	const (
		interval = 10 * time.Second
		rotation = 2 * time.Minute
		lifetime = 5 * time.Minute
	)
	ctx := context.Background()
	type server struct {
		ring *ticketfmt.KeyRing
		sync *KeySync
	}
	newServer := func() server {
		r := newTestRedis(t, srv, RedisConfig{Key: testStoreKey})
		ring, ks, err := SharedKeyRing(ctx, r, ticketfmt.KeyRingConfig{Now: clock.Now, Rotation: rotation, TicketLifetime: lifetime},
			KeySyncConfig{Interval: interval, Manual: true})
		if err != nil {
			t.Fatal(err)
		}
		return server{ring, ks}
	}
	servers := []server{newServer(), newServer(), newServer()}
	st := &ticketfmt.State{Version: 0xfefd, CipherSuite: 0xc0a8, SessionCreated: clock.Now(), Lifetime: lifetime,
		Peer: ticketfmt.PeerIdentity{Type: ticketfmt.Anonymous}}
	type sealed struct {
		at     time.Time
		by     int
		ticket []byte
	}
	var tickets []sealed
	keysSeen := map[[16]byte]bool{}
	c := srv.client()
	defer c.Close()
	for step := range 120 { // 20 minutes: 10 rotations
		clock.Advance(interval)
		if step == 40 {
			servers = append(servers, newServer())
		}
		// Before anyone syncs: keys that start now start on every ring.
		for i, s := range servers {
			tk, err := s.ring.Seal(st, ticketfmt.LabelServer)
			if err != nil {
				t.Fatal(err)
			}
			for j, o := range servers {
				if _, err := o.ring.Open(tk, ticketfmt.LabelServer); err != nil {
					t.Fatalf("step %d, before the syncs: ring %d's ticket does not open on ring %d: %v", step, i, j, err)
				}
			}
		}
		for i := range servers {
			j := (i + step) % len(servers)
			if (step+j)%9 == 0 {
				continue // this server misses a sync
			}
			if err := servers[j].sync.SyncNow(ctx); err != nil {
				t.Fatalf("step %d: sync %d: %v", step, j, err)
			}
		}
		now := clock.Now()
		cur := servers[0].ring.Keys()[0].Name
		for i, s := range servers {
			tk, err := s.ring.Seal(st, ticketfmt.LabelServer)
			if err != nil {
				t.Fatal(err)
			}
			if name := [16]byte(tk[:16]); name != cur {
				t.Fatalf("step %d: ring %d seals with %x, ring 0 with %x", step, i, name, cur)
			}
			keysSeen[cur] = true
			tickets = append(tickets, sealed{now, i, tk})
		}
		for _, tk := range tickets {
			if now.Sub(tk.at) > lifetime {
				continue
			}
			for i, s := range servers {
				if _, err := s.ring.Open(tk.ticket, ticketfmt.LabelServer); err != nil {
					t.Fatalf("step %d: ticket sealed by ring %d %v ago does not open on ring %d: %v", step, tk.by, now.Sub(tk.at), i, err)
				}
			}
		}
		// Redis keeps only keys that may still open tickets.
		if n, err := c.HLen(ctx, DefaultRedisPrefix+"ticketkeys").Result(); err != nil || n > int64((rotation+lifetime)/rotation)+3 {
			t.Fatalf("step %d: %d keys published (%v)", step, n, err)
		}
	}
	if len(keysSeen) < 9 {
		t.Errorf("%d keys used over 10 rotations", len(keysSeen))
	}
	var published uint64
	for _, s := range servers {
		published += s.sync.Stats().Published
	}
	if published != uint64(len(keysSeen)) {
		t.Errorf("%d keys published, %d used", published, len(keysSeen))
	}
	// A managed ring does not rotate on its own.
	if err := servers[0].ring.Rotate(); err == nil {
		t.Error("Rotate on a managed ring succeeded")
	}
	plain, err := ticketfmt.NewKeyRing(ticketfmt.KeyRingConfig{})
	if err != nil {
		t.Fatal(err)
	}
	r := newTestRedis(t, srv, RedisConfig{})
	if _, err := SyncKeyRing(ctx, r, plain, KeySyncConfig{}); err == nil {
		t.Error("SyncKeyRing accepted an unmanaged ring")
	}
}

// TestSharedKeyRingsStartedTogether: servers that start at once on an empty
// Redis agree on their first ticket key: the one that loses the publishing
// lock takes the winner's key as it lands, not an Interval later, so a
// ticket sealed by either opens on the other at once.
func TestSharedKeyRingsStartedTogether(t *testing.T) {
	srv := startRedis(t)
	for round := range 5 {
		prefix := fmt.Sprintf("together%d:", round)
		type result struct {
			ring *ticketfmt.KeyRing
			err  error
		}
		results := make(chan result, 2)
		for range 2 {
			go func() {
				r := newTestRedis(t, srv, RedisConfig{Prefix: prefix})
				ring, ks, err := SharedKeyRing(context.Background(), r, ticketfmt.KeyRingConfig{}, KeySyncConfig{Interval: time.Hour, Lead: 3 * time.Hour})
				if err == nil {
					t.Cleanup(ks.Stop)
				}
				results <- result{ring, err}
			}()
		}
		a, b := <-results, <-results
		if a.err != nil || b.err != nil {
			t.Fatal(a.err, b.err)
		}
		st := &ticketfmt.State{Version: 0xfefd, CipherSuite: 0xc0a8, Timestamp: time.Now(), SessionCreated: time.Now(), Lifetime: time.Hour}
		for _, pair := range [][2]*ticketfmt.KeyRing{{a.ring, b.ring}, {b.ring, a.ring}} {
			ticket, err := pair[0].Seal(st, ticketfmt.LabelServer)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := pair[1].Open(ticket, ticketfmt.LabelServer); err != nil {
				t.Fatalf("round %d: a ticket of one server does not open on the other started with it: %v", round, err)
			}
		}
	}
}
