package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/internal/dtlstest"
	"github.com/dtlsresume/dtlsresume/internal/peers"
	"github.com/dtlsresume/dtlsresume/negotiation"
	"github.com/dtlsresume/dtlsresume/ticketfmt"
)

// End-to-end tests: real dtls Listeners on loopback UDP with the stores of
// this package behind them.

var testPSK = []byte("0123456789abcdef")

const testServerName = "sessions.test"

func serverConfig() *dtls.Config {
	return &dtls.Config{
		PSK: func(id []byte) ([]byte, error) {
			if string(id) != "client1" {
				return nil, errors.New("unknown identity")
			}
			return testPSK, nil
		},
		RetransmitInterval: 200 * time.Millisecond,
	}
}

// resumptionClient is a client that resumes by one type. session_id and
// session_ticket clients keep their session in cache; a client_state client
// keeps nothing, and gets a brand-new Config for every dial.
type resumptionClient struct {
	typ   negotiation.Type
	cache dtls.ClientSessionCache
	// csKey is a client_state client's ticket key: its own, so that its
	// handle differs from every other test client's (all share one PSK).
	csKey []byte
}

func newResumptionClient(typ negotiation.Type) *resumptionClient {
	c := &resumptionClient{typ: typ, cache: dtls.NewLRUClientSessionCache(4), csKey: make([]byte, 16)}
	rand.Read(c.csKey)
	return c
}

func newResumptionClients() []*resumptionClient {
	var cs []*resumptionClient
	for _, typ := range []negotiation.Type{negotiation.SessionID, negotiation.SessionTicket, negotiation.ClientState} {
		cs = append(cs, newResumptionClient(typ))
	}
	return cs
}

func (c *resumptionClient) config() *dtls.Config {
	cfg := &dtls.Config{
		PSK:                func([]byte) ([]byte, error) { return testPSK, nil },
		PSKIdentityHint:    []byte("client1"),
		ServerName:         testServerName,
		RetransmitInterval: 200 * time.Millisecond,
		Resumption:         []negotiation.Type{c.typ},
	}
	if c.typ == negotiation.ClientState {
		cfg.ClientStateKey = c.csKey
	} else {
		cfg.ClientSessionCache = c.cache
	}
	return cfg
}

// dial handshakes with addr, echoes a message and returns the state.
func (c *resumptionClient) dial(t testing.TB, addr net.Addr) dtls.ConnectionState {
	t.Helper()
	st, err := c.tryDial(addr, 10*time.Second)
	if err != nil {
		t.Fatalf("%v client: %v", c.typ, err)
	}
	return st
}

func (c *resumptionClient) tryDial(addr net.Addr, timeout time.Duration) (dtls.ConnectionState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := dtls.DialContext(ctx, "udp", addr.(*net.UDPAddr), c.config())
	if err != nil {
		return dtls.ConnectionState{}, err
	}
	defer conn.Close()
	msg := []byte("hello " + c.typ.String())
	if _, err := conn.Write(msg); err != nil {
		return dtls.ConnectionState{}, err
	}
	conn.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 256)
	n, err := conn.Read(buf)
	if err != nil {
		return dtls.ConnectionState{}, err
	}
	if !bytes.Equal(buf[:n], msg) {
		return dtls.ConnectionState{}, fmt.Errorf("echo %q", buf[:n])
	}
	return conn.ConnectionState(), nil
}

func (c *resumptionClient) expectFull(t testing.TB, addr net.Addr) {
	t.Helper()
	st := c.dial(t, addr)
	if st.Resumed || st.Resumption != c.typ {
		t.Fatalf("%v client, first handshake: resumed=%v by %v, want a full handshake setting up %v", c.typ, st.Resumed, st.Resumption, c.typ)
	}
}

func (c *resumptionClient) expectResumed(t testing.TB, addr net.Addr, where string) {
	t.Helper()
	st := c.dial(t, addr)
	if !st.Resumed || st.Resumption != c.typ {
		t.Fatalf("%v client %s: resumed=%v by %v, want resumed by %v", c.typ, where, st.Resumed, st.Resumption, c.typ)
	}
}

// startListener serves an echo on a loopback port until the test ends (or
// stop is called).
func startListener(t testing.TB, cfg *dtls.Config) (l *dtls.Listener, stop func()) {
	t.Helper()
	l, err := dtls.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { serveEcho(l) })
	var once sync.Once
	stop = func() {
		once.Do(func() {
			l.Close()
			wg.Wait()
		})
	}
	t.Cleanup(stop)
	return l, stop
}

func serveEcho(l *dtls.Listener) { dtlstest.ServeEcho(l, nil) }

// TestClusterResumption: three servers share one redis-server for their
// sessions, client_state records and ticket keys. A client of each type
// does its full handshake on the first and resumes on the second and the
// third; the shared ticket key rotates while the clients are mid-session,
// and they resume on every server again.
func TestClusterResumption(t *testing.T) {
	srv := startRedis(t)
	ctx := context.Background()
	const rotation = 3 * time.Second
	var rings []*ticketfmt.KeyRing
	var addrs []net.Addr
	for range 3 {
		r := newTestRedis(t, srv, RedisConfig{Key: testStoreKey})
		ring, ks, err := SharedKeyRing(ctx, r, ticketfmt.KeyRingConfig{Rotation: rotation, TicketLifetime: time.Minute},
			KeySyncConfig{Interval: 200 * time.Millisecond, Lead: 600 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ks.Stop)
		cfg := serverConfig()
		cfg.SessionStore = r
		cfg.TicketKeys = ring
		l, _ := startListener(t, cfg)
		rings = append(rings, ring)
		addrs = append(addrs, l.Addr())
	}
	clients := newResumptionClients()
	for _, c := range clients {
		c.expectFull(t, addrs[0])
		c.expectResumed(t, addrs[1], "on server 2")
		c.expectResumed(t, addrs[2], "on server 3")
		c.expectResumed(t, addrs[0], "back on server 1")
	}

	// Rotation mid-session.
	before := rings[0].Keys()[0].Name
	deadline := time.Now().Add(3 * rotation)
	for rings[0].Keys()[0].Name == before {
		if time.Now().After(deadline) {
			t.Fatal("the shared key did not rotate")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i, ring := range rings {
		if ring.Keys()[0].Name != rings[0].Keys()[0].Name {
			t.Errorf("after the rotation ring %d seals with another key", i+1)
		}
	}
	for _, c := range clients {
		for i, a := range addrs {
			c.expectResumed(t, a, fmt.Sprintf("on server %d after the rotation", i+1))
		}
	}
	// New sessions after the rotation also travel.
	fresh := newResumptionClients()
	for _, c := range fresh {
		c.expectFull(t, addrs[2])
		c.expectResumed(t, addrs[0], "on server 1 (new session)")
	}
}

// TestClusterStoreDown: with Redis down, handshakes complete (full, since
// nothing can be looked up) in about the time they take anyway; when it is
// back, resumption across servers returns.
func TestClusterStoreDown(t *testing.T) {
	srv := startRedis(t)
	ctx := context.Background()
	var addrs []net.Addr
	for range 2 {
		r := newTestRedis(t, srv, RedisConfig{Timeout: 100 * time.Millisecond})
		ring, ks, err := SharedKeyRing(ctx, r, ticketfmt.KeyRingConfig{}, KeySyncConfig{Interval: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ks.Stop)
		cfg := serverConfig()
		cfg.SessionStore = r
		cfg.TicketKeys = ring
		l, _ := startListener(t, cfg)
		addrs = append(addrs, l.Addr())
	}
	clients := newResumptionClients()
	for _, c := range clients {
		c.expectFull(t, addrs[0])
		c.expectResumed(t, addrs[1], "on server 2")
	}
	// A hung Redis (stopped, not dead): every lookup times out.
	if err := syscall.Kill(srv.proc.Pid(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		start := time.Now()
		st := c.dial(t, addrs[1])
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%v client: handshake with Redis hung took %v", c.typ, d)
		}
		if st.Resumed != (c.typ == negotiation.SessionTicket) {
			t.Errorf("%v client with Redis hung: resumed=%v", c.typ, st.Resumed)
		}
	}
	if err := syscall.Kill(srv.proc.Pid(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	srv.stop()
	for _, c := range clients {
		start := time.Now()
		st := c.dial(t, addrs[1])
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%v client: handshake with Redis down took %v", c.typ, d)
		}
		// Tickets need no store: they still resume.
		if c.typ == negotiation.SessionTicket {
			if !st.Resumed {
				t.Errorf("ticket did not resume with Redis down")
			}
		} else if st.Resumed {
			t.Errorf("%v resumed with Redis down", c.typ)
		}
	}
	srv.start() // empty: the sessions are gone
	var err error
	for _, c := range clients {
		deadline := time.Now().Add(10 * time.Second)
		for {
			// A full handshake that the store keeps, then a resumption
			// on the other server.
			var st dtls.ConnectionState
			if st, err = c.tryDial(addrs[0], 5*time.Second); err == nil {
				if st, err = c.tryDial(addrs[1], 5*time.Second); err == nil && st.Resumed && st.Resumption == c.typ {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%v: no resumption 10s after Redis returned (%v, %+v)", c.typ, err, st)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// TestRestartResumption: a server with a file store is stopped and started
// again on the same file; clients of every type resume without a full
// handshake.
func TestRestartResumption(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions")
	start := func() (net.Addr, func()) {
		f, err := NewFile(path, testStoreKey, FileConfig{})
		if err != nil {
			t.Fatal(err)
		}
		pr, err := FileKeyRing(f, ticketfmt.KeyRingConfig{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg := serverConfig()
		cfg.SessionStore = f
		cfg.TicketKeys = pr.Ring
		l, stopListener := startListener(t, cfg)
		return l.Addr(), func() {
			stopListener()
			if err := pr.Close(); err != nil {
				t.Error(err)
			}
			if err := f.Close(); err != nil {
				t.Error(err)
			}
		}
	}
	addr, stop := start()
	clients := newResumptionClients()
	for _, c := range clients {
		c.expectFull(t, addr)
		c.expectResumed(t, addr, "before the restart")
	}
	stop()
	addr, stop = start()
	defer stop()
	for _, c := range clients {
		c.expectResumed(t, addr, "after the restart")
	}
}

// helperEnv makes the test binary run a server (runHelperServer) instead of
// the tests: TestKilledServerResumption starts it as a separate process to
// SIGKILL it.
const helperEnv = "DTLSRESUME_STORE_TEST_SERVER"

func TestMain(m *testing.M) {
	if path := os.Getenv(helperEnv); path != "" {
		os.Exit(runHelperServer(path))
	}
	os.Exit(m.Run())
}

// runHelperServer serves DTLS echo with the file store at path, until
// killed.
func runHelperServer(path string) int {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	f, err := NewFile(path, testStoreKey, FileConfig{Logger: logger})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	pr, err := FileKeyRing(f, ticketfmt.KeyRingConfig{}, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	cfg := serverConfig()
	cfg.SessionStore = f
	cfg.TicketKeys = pr.Ring
	cfg.Logger = logger
	l, err := dtls.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	fmt.Printf("LISTENING %s sessions=%d\n", l.Addr(), f.Len())
	serveEcho(l)
	return 0
}

// TestKilledServerResumption: a server process with a file store is
// SIGKILLed, in the middle of a burst of handshakes that write to the
// store, and started again on the same file: the file opens, and clients of
// every type whose handshake had completed resume without a full handshake.
func TestKilledServerResumption(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions")
	t.Setenv(helperEnv, path)
	listening := regexp.MustCompile(`LISTENING (\S+) sessions=(\d+)`)
	start := func() (*peers.Process, net.Addr) {
		p := peers.Start(t, os.Args[0], "-test.run=^$")
		m, err := p.WaitForRegexp(listening, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		addr, err := net.ResolveUDPAddr("udp", m[1])
		if err != nil {
			t.Fatal(err)
		}
		return p, addr
	}
	p, addr := start()
	clients := newResumptionClients()
	for _, c := range clients {
		c.expectFull(t, addr)
		c.expectResumed(t, addr, "before the kill")
	}

	// A burst of full handshakes, each storing a session, killed midway.
	var done atomic.Int32
	var wg sync.WaitGroup
	stopBurst := make(chan struct{})
	for g := range 3 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stopBurst:
					return
				default:
				}
				typ := []negotiation.Type{negotiation.SessionID, negotiation.ClientState}[(g+i)%2]
				c := newResumptionClient(typ)
				if _, err := c.tryDial(addr, time.Second); err == nil {
					done.Add(1)
				}
			}
		})
	}
	burstDeadline := time.Now().Add(20 * time.Second)
	for done.Load() < 6 {
		if time.Now().After(burstDeadline) {
			close(stopBurst)
			wg.Wait()
			t.Fatalf("only %d burst handshakes in 20s", done.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(10 * time.Second); err == nil {
		t.Fatal("the server exited normally")
	}
	close(stopBurst)
	wg.Wait()
	t.Logf("%d burst handshakes completed before the kill", done.Load())

	_, addr = start()
	for _, c := range clients {
		c.expectResumed(t, addr, "after SIGKILL and restart")
	}
}
