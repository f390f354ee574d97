package dtls

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The resource model on the wire (docs/decisions.md, "Resource model",
// "Amplification", "Cookies"): every limit at and past its edge, the 3x
// bound for unverified addresses, cookie expiry, association replacement
// and the post-handshake retransmission rule.

// limitCounter counts the limits a Config's LimitObserver reports.
type limitCounter struct {
	mu sync.Mutex
	n  map[Limit]int
}

func countLimits(cfg *Config) *limitCounter {
	lc := &limitCounter{n: map[Limit]int{}}
	cfg.LimitObserver = func(l Limit) {
		lc.mu.Lock()
		lc.n[l]++
		lc.mu.Unlock()
	}
	return lc
}

func (lc *limitCounter) get(l Limit) int {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	return lc.n[l]
}

// dialFrom completes a PSK handshake from a socket bound to ip.
func dialFrom(t *testing.T, ip net.IP, l *Listener, timeout time.Duration) (*Conn, error) {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	cfg := pskClientConfig()
	cfg.HandshakeTimeout = timeout
	c, err := Client(pc, l.Addr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); pc.Close() })
	return c, c.Handshake()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var loopback1, loopback2 = net.IPv4(127, 0, 0, 1), net.IPv4(127, 0, 0, 2)

// TestMaxConnections: at the limit a newcomer's handshake does not start
// and the established connections keep working; a slot that frees up
// serves the next one.
func TestMaxConnections(t *testing.T) {
	cfg := pskServerConfig()
	cfg.MaxConnections = 2
	lc := countLimits(cfg)
	l := startEchoServer(t, cfg)
	a, err := dialFrom(t, loopback1, l, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	b, err := dialFrom(t, loopback1, l, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dialFrom(t, loopback1, l, 300*time.Millisecond); err == nil {
		t.Fatal("a third connection was admitted past MaxConnections=2")
	}
	if lc.get(LimitConnections) == 0 {
		t.Error("the connection limit was not reported")
	}
	echoOnce(t, a, "still here")
	echoOnce(t, b, "me too")
	a.Close()
	waitFor(t, "the closed connection to leave", func() bool { return l.Stats().Connections == 1 })
	c, err := dialFrom(t, loopback1, l, 2*time.Second)
	if err != nil {
		t.Fatalf("after a slot freed up: %v", err)
	}
	echoOnce(t, c, "in")
}

// stuckHandshake starts a raw PSK handshake from 127.0.0.1 that stops
// after the server's flight 4, holding a handshake slot until the server
// gives up.
func stuckHandshake(t *testing.T, l *Listener) *rawEnd {
	t.Helper()
	e := startRawClient(t, l)
	e.cookieExchange(newClientHello(t, pskClientConfig()))
	if err := e.readServerFlight(); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestMaxHandshakes: while MaxHandshakes handshakes run, a newcomer does
// not get one; when the stuck one times out, it does.
func TestMaxHandshakes(t *testing.T) {
	cfg := pskServerConfig()
	cfg.MaxHandshakes = 1
	cfg.HandshakeTimeout = time.Second
	lc := countLimits(cfg)
	l := startEchoServer(t, cfg)
	stuckHandshake(t, l)
	if _, err := dialFrom(t, loopback1, l, 300*time.Millisecond); err == nil {
		t.Fatal("a second handshake ran past MaxHandshakes=1")
	}
	if lc.get(LimitHandshakes) == 0 {
		t.Error("the handshake limit was not reported")
	}
	waitFor(t, "the stuck handshake to time out", func() bool { return l.Stats().Handshakes == 0 })
	if _, err := dialFrom(t, loopback1, l, 2*time.Second); err != nil {
		t.Fatalf("after the stuck handshake ended: %v", err)
	}
}

// TestMaxHandshakesPerIP: one source IP cannot take every handshake slot;
// another IP still gets one.
func TestMaxHandshakesPerIP(t *testing.T) {
	cfg := pskServerConfig()
	cfg.MaxHandshakesPerIP = 1
	lc := countLimits(cfg)
	l := startEchoServer(t, cfg)
	stuckHandshake(t, l)
	if _, err := dialFrom(t, loopback1, l, 300*time.Millisecond); err == nil {
		t.Fatal("a second handshake from 127.0.0.1 ran past MaxHandshakesPerIP=1")
	}
	if lc.get(LimitHandshakesPerIP) == 0 {
		t.Error("the per-IP limit was not reported")
	}
	c, err := dialFrom(t, loopback2, l, 2*time.Second)
	if err != nil {
		t.Fatalf("from 127.0.0.2: %v", err)
	}
	echoOnce(t, c, "other address")
}

// TestReassemblyBudget: a declared length reserves nothing; what arrives
// is charged, up to the budget, and given back when its message completes.
func TestReassemblyBudget(t *testing.T) {
	r := reassembler{budget: 1000}
	bomb := func(seq uint16) handshakeFragment {
		return handshakeFragment{msgType: typeCertificate, length: maxHandshakeMessage, seq: seq, offset: 7, data: []byte{1}}
	}
	for seq := uint16(0); seq < reassemblyWindow; seq++ {
		err := r.add(bomb(seq), 0)
		if want := 1000 - int(seq+1)*(1+fragmentOverhead); want >= 0 {
			if err != nil || r.budget != want {
				t.Fatalf("fragment %d: err %v, budget %d, want %d", seq, err, r.budget, want)
			}
		} else if !errors.Is(err, errHandshakeMemory) {
			t.Fatalf("fragment %d past the budget: %v", seq, err)
		}
	}
	r = reassembler{budget: 1000}
	msg := make([]byte, 600)
	if err := r.add(handshakeFragment{msgType: typeCertificate, length: 600, offset: 300, data: msg[300:]}, 0); err != nil {
		t.Fatal(err)
	}
	if err := r.add(handshakeFragment{msgType: typeCertificate, length: 600, offset: 300, data: msg[300:]}, 0); err != nil || r.budget != 1000-300-fragmentOverhead {
		t.Fatalf("a duplicate fragment was charged: budget %d, err %v", r.budget, err)
	}
	if err := r.add(handshakeFragment{msgType: typeCertificate, length: 600, data: msg[:300]}, 0); err != nil {
		t.Fatal(err)
	}
	if m, ok := r.pop(); !ok || len(m.body) != 600 || r.budget != 1000 {
		t.Fatalf("pop: ok %v, %d bytes, budget %d after", ok, len(m.body), r.budget)
	}
	if err := r.add(handshakeFragment{msgType: typeCertificate, length: 2000, seq: 1, data: make([]byte, 1000)}, 0); !errors.Is(err, errHandshakeMemory) {
		t.Fatalf("a fragment larger than the budget: %v", err)
	}
}

// TestHandshakeMemoryLimitOnTheWire: a verified peer's fragment bomb costs
// what arrived, not what the headers declare; a fragment past
// MaxHandshakeMemory is refused and reported, and the handshake completes
// with the genuine messages.
func TestHandshakeMemoryLimitOnTheWire(t *testing.T) {
	cfg := pskServerConfig()
	bombCost := 16 * (1 + fragmentOverhead)
	cfg.MaxHandshakeMemory = bombCost + 300 // the bomb and the genuine flight 5
	lc := countLimits(cfg)
	l := startEchoServer(t, cfg)
	e := startRawClient(t, l)
	e.cookieExchange(newClientHello(t, pskClientConfig()))
	if err := e.readServerFlight(); err != nil {
		t.Fatal(err)
	}
	// Sixteen one-byte fragments of messages far in the window, each
	// declaring 64 KiB: 16*49 bytes held, not 1 MiB.
	var rec []byte
	for i := range 16 {
		rec = marshalHandshakeHeader(rec, typeCertificate, maxHandshakeMessage-1, e.sendSeq+4+uint16(i%8), 100+i, 1)
		rec = append(rec, byte(i))
	}
	e.send(plainRecord(recordHandshake, 0, 90, rec))
	time.Sleep(50 * time.Millisecond)
	if n := lc.get(LimitHandshakeMemory); n != 0 {
		t.Fatalf("%d fragments refused within the budget", n)
	}
	// One 400-byte fragment more does not fit what is left.
	big := marshalHandshakeHeader(nil, typeCertificate, 2000, e.sendSeq+13, 0, 400)
	e.send(plainRecord(recordHandshake, 0, 91, append(big, make([]byte, 400)...)))
	waitFor(t, "the memory limit to be reported", func() bool { return lc.get(LimitHandshakeMemory) > 0 })
	e.send(cat(e.pskKeyExchange([]byte("client1")), e.ccs(), e.finished()))
	e.expectFinished()
	e.sendApp([]byte("ping"))
	if got := e.readApp(); string(got) != "ping" {
		t.Fatalf("echo %q", got)
	}
}

// TestInboundBytesLimit: a connection whose application does not read
// queues at most MaxInboundBytes; the rest is dropped and reported, and
// the connection works on.
func TestInboundBytesLimit(t *testing.T) {
	cfg := pskServerConfig()
	cfg.MaxInboundBytes = 2000
	lc := countLimits(cfg)
	l, err := Listen("udp", &net.UDPAddr{IP: loopback1}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	client, err := dialFrom(t, loopback1, l, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	server := <-accepted
	defer server.Close()
	msg := make([]byte, 500)
	for i := range 10 {
		msg[0] = byte(i)
		if _, err := client.Write(msg); err != nil {
			t.Fatal(err)
		}
	}
	// Each 500-byte message is a 529-byte datagram (CCM_8): three fit in
	// 2000 bytes, seven are dropped.
	waitFor(t, "seven drops to be reported", func() bool { return lc.get(LimitInboundBytes) == 7 })
	buf := make([]byte, 2048)
	got := 0
	for {
		_ = server.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := server.Read(buf); err != nil {
			break
		}
		got++
	}
	if got != 3 {
		t.Fatalf("read %d queued messages, want 3", got)
	}
	_ = server.SetReadDeadline(time.Time{})
	if _, err := client.Write([]byte("after")); err != nil {
		t.Fatal(err)
	}
	n, err := server.Read(buf)
	if err != nil || string(buf[:n]) != "after" {
		t.Fatalf("after the drops: %q, %v", buf[:n], err)
	}
}

// TestAcceptBacklogClosesNotParks: a completed handshake that finds the
// backlog full is closed (the peer gets close_notify) instead of waiting.
func TestAcceptBacklogClosesNotParks(t *testing.T) {
	cfg := pskServerConfig()
	cfg.AcceptBacklog = 1
	lc := countLimits(cfg)
	l, err := Listen("udp", &net.UDPAddr{IP: loopback1}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var clients []*Conn
	for range 3 {
		c, err := dialFrom(t, loopback1, l, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	waitFor(t, "two connections to be turned away", func() bool { return lc.get(LimitAcceptBacklog) == 2 })
	waitFor(t, "the turned-away connections to leave", func() bool { return l.Stats().Connections == 1 })
	eofs := 0
	for _, c := range clients[1:] {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(make([]byte, 10)); errors.Is(err, io.EOF) {
			eofs++
		}
	}
	if eofs != 2 {
		t.Fatalf("%d of the turned-away clients saw close_notify, want 2", eofs)
	}
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.RemoteAddr().String() != clients[0].LocalAddr().String() {
		t.Fatalf("accepted %v, want the first client %v", s.RemoteAddr(), clients[0].LocalAddr())
	}
}

// countingRawEnd wraps a raw client's socket to count its bytes both ways.
type countingRawEnd struct {
	*rawEnd
	sent, received int
}

func (c *countingRawEnd) sendRaw(d []byte) {
	c.send(d)
	c.sent += len(d)
}

// drain reads everything the server sends for d and returns the bytes.
func (c *countingRawEnd) drain(d time.Duration) int {
	buf := make([]byte, 64*1024)
	deadline := time.Now().Add(d)
	n := 0
	for {
		_ = c.conn.SetReadDeadline(deadline)
		k, _, err := c.conn.ReadFromUDP(buf)
		if err != nil {
			c.received += n
			return n
		}
		n += k
	}
}

// resumptionHello is the datagram of a cookie-less ClientHello that
// resumes s by ticket: what an attacker replays from other addresses.
func resumptionHello(t testing.TB, s rawSession) []byte {
	h := newClientHello(t, pskClientConfig())
	h.sessionID = make([]byte, 32)
	if _, err := rand.Read(h.sessionID); err != nil {
		t.Fatal(err)
	}
	h.extensions = append(h.extensions, extension{extSessionTicket, s.ticket})
	return plainRecord(recordHandshake, 0, 0, fullHandshakeMessage(typeClientHello, 0, mustMarshal(t, h)))
}

// fragmentBomb is one datagram of sixteen one-byte epoch-0 fragments,
// each declaring a 64 KiB message.
func fragmentBomb() []byte {
	var out []byte
	for i := range 16 {
		rec := marshalHandshakeHeader(nil, typeCertificate, maxHandshakeMessage-1, uint16(1+i%8), 1000*i, 1)
		out = append(out, plainRecord(recordHandshake, 0, uint64(1+i), append(rec, byte(i)))...)
	}
	return out
}

// TestAmplificationBoundForUnverifiedAddress: a resumption hello replayed
// from an address that never answers is resumed without a cookie, but
// everything sent there, retransmissions included, stays within the
// amplification factor times what came from there (a fragment bomb
// included), and the server lets the handshake go within a few
// retransmission intervals.
func TestAmplificationBoundForUnverifiedAddress(t *testing.T) {
	for _, factor := range []float64{3, 1.5} {
		cfg := pskServerConfig()
		cfg.RetransmitInterval = 30 * time.Millisecond
		cfg.HandshakeTimeout = 10 * time.Second
		cfg.AmplificationFactor = factor
		lc := countLimits(cfg)
		l := startEchoServer(t, cfg)
		for _, withBomb := range []bool{false, true} {
			hello := resumptionHello(t, rawTicketSession(t, l))
			a := &countingRawEnd{rawEnd: startRawClient(t, l)}
			a.sendRaw(hello)
			// The reply shows the handshake runs; then it must be let go.
			buf := make([]byte, 64*1024)
			_ = a.conn.SetReadDeadline(time.Now().Add(rawTimeout))
			n, _, err := a.conn.ReadFromUDP(buf)
			if err != nil {
				t.Fatalf("the replayed resumption got no reply, so it was not resumed without a cookie: %v", err)
			}
			a.received += n
			if withBomb {
				a.sendRaw(fragmentBomb())
			}
			start := time.Now()
			waitFor(t, "the replayed handshake to be given up", func() bool { return l.Stats().Handshakes == 0 })
			given := time.Since(start)
			a.drain(300 * time.Millisecond)
			if float64(a.received) > factor*float64(a.sent) {
				t.Errorf("factor %v, bomb %v: sent %d bytes, got %d back", factor, withBomb, a.sent, a.received)
			}
			if limit := unverifiedHandshakeIntervals * cfg.RetransmitInterval; given > limit+100*time.Millisecond {
				t.Errorf("factor %v, bomb %v: the unanswered handshake was held %v, over %v", factor, withBomb, given, limit)
			}
			t.Logf("factor %v, bomb %v: %d bytes in, %d out (%.2fx); state released after %v", factor, withBomb, a.sent, a.received,
				float64(a.received)/float64(a.sent), given.Round(time.Millisecond))
		}
		if factor < 2 && lc.get(LimitAmplification) == 0 {
			t.Error("no retransmission was held back by the amplification bound")
		}
	}
}

// fakeClock is a settable Config.Time.
type fakeClock struct{ offset atomic.Int64 }

func (f *fakeClock) now() time.Time               { return time.Now().Add(time.Duration(f.offset.Load())) }
func (f *fakeClock) advance(d time.Duration)      { f.offset.Add(int64(d)) }
func withClock(cfg *Config, f *fakeClock) *Config { cfg.Time = f.now; return cfg }

// cookieHello is the datagram of the ClientHello with the cookie that a
// raw client's cookie exchange sent.
func cookieHello(t *testing.T, e *rawEnd) []byte {
	return plainRecord(recordHandshake, 0, 1, fullHandshakeMessage(typeClientHello, 1, mustMarshal(t, e.hello)))
}

// firstHandshakeType returns the type of the first handshake message in a
// datagram's first record, or 0.
func firstHandshakeType(d []byte) uint8 {
	if len(d) > recordHeaderLen && d[0] == recordHandshake {
		return d[recordHeaderLen]
	}
	return 0
}

// TestReplayedCookieHelloAfterExpiry: an old captured cookie-bearing hello,
// replayed from the victim's address after the cookie expired, gets a
// HelloVerifyRequest; the victim's connection keeps working. Replayed while
// the cookie is still valid it is a copy of the hello that made the
// connection, and is dropped.
func TestReplayedCookieHelloAfterExpiry(t *testing.T) {
	clock := &fakeClock{}
	cfg := withClock(pskServerConfig(), clock)
	cfg.HandshakeTimeout = 500 * time.Millisecond
	l := startEchoServer(t, cfg)
	e := rawPSKHandshake(t, l)
	replay := cookieHello(t, e)

	// Within the cookie's lifetime: a successor handshake starts and never
	// completes; the association stays.
	e.send(replay)
	waitFor(t, "the replayed hello's handshake to end", func() bool { return l.Stats().Handshakes == 0 })
	e.sendApp([]byte("still mine"))
	if got := e.readApp(); string(got) != "still mine" {
		t.Fatalf("echo %q", got)
	}

	clock.advance(DefaultCookieLifetime + time.Second)
	e.send(replay)
	buf := make([]byte, 2048)
	_ = e.conn.SetReadDeadline(time.Now().Add(rawTimeout))
	n, _, err := e.conn.ReadFromUDP(buf)
	if err != nil {
		t.Fatal(err)
	}
	if typ := firstHandshakeType(buf[:n]); typ != typeHelloVerifyRequest {
		t.Fatalf("an expired cookie got handshake type %d, want a HelloVerifyRequest", typ)
	}
	if l.Stats().Handshakes != 0 {
		t.Fatal("an expired cookie started a handshake")
	}
	e.sendApp([]byte("ping"))
	if got := e.readApp(); string(got) != "ping" {
		t.Fatalf("echo %q after the replay", got)
	}
}

// TestCookieSecretRotatesOnATimer: the secret changes on a timer even when
// no cookie is made or checked; a cookie outlives one rotation, not two.
func TestCookieSecretRotatesOnATimer(t *testing.T) {
	cfg := pskServerConfig()
	cfg.CookieRotation = 40 * time.Millisecond
	cfg.CookieLifetime = time.Hour
	l := startEchoServer(t, cfg)
	cur, _ := l.cookies.secrets()
	waitFor(t, "two rotations", func() bool {
		_, prev := l.cookies.secrets()
		c, _ := l.cookies.secrets()
		return c != cur && prev != cur
	})
	jar := l.cookies
	h := newClientHello(t, pskClientConfig())
	h.cookie = jar.make("127.0.0.1:1", h)
	if !jar.valid("127.0.0.1:1", h) {
		t.Fatal("a fresh cookie is not valid")
	}
	jar.rotate()
	if !jar.valid("127.0.0.1:1", h) {
		t.Fatal("a cookie of the previous secret is not valid")
	}
	jar.rotate()
	if jar.valid("127.0.0.1:1", h) {
		t.Fatal("a cookie two rotations old is still valid")
	}
}

// slowStore delays Gets of session-ID entries.
type slowStore struct {
	*mapStore
	delay time.Duration
}

func (s *slowStore) Get(ctx context.Context, k []byte) ([]byte, error) {
	if strings.HasPrefix(string(k), "sid/") {
		select {
		case <-time.After(s.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.mapStore.Get(ctx, k)
}

// TestLateLookupNeverReplacesAConnection: a cookie-less session-ID
// resumption whose store lookup ends after a cookie-verified connection was
// made from the same address gets a HelloVerifyRequest; the connection made
// meanwhile stays.
func TestLateLookupNeverReplacesAConnection(t *testing.T) {
	store := &slowStore{mapStore: newMapStore(), delay: 150 * time.Millisecond}
	cfg := pskServerConfig()
	cfg.SessionStore = store
	cfg.SessionTicketsDisabled = true
	l := startEchoServer(t, cfg)
	ccfg := pskClientConfig()
	ccfg.ClientSessionCache = NewLRUClientSessionCache(1)
	first, err := Dial("udp", l.Addr().(*net.UDPAddr), ccfg)
	if err != nil {
		t.Fatal(err)
	}
	sid := first.ConnectionState().SessionID
	first.Close()
	if len(sid) == 0 {
		t.Fatal("no session ID was issued")
	}

	e := startRawClient(t, l)
	h := newClientHello(t, pskClientConfig())
	h.sessionID = sid
	e.send(plainRecord(recordHandshake, 0, 0, fullHandshakeMessage(typeClientHello, 0, mustMarshal(t, h))))
	// The lookup is under way; a full handshake with a cookie completes
	// from the same address meanwhile.
	e.sendSeq = 0
	e.cookieExchange(newClientHello(t, pskClientConfig()))
	if err := e.readServerFlight(); err != nil {
		t.Fatal(err)
	}
	e.send(cat(e.pskKeyExchange([]byte("client1")), e.ccs(), e.finished()))
	e.expectFinished()
	time.Sleep(2 * store.delay) // the lookup ends
	e.sendApp([]byte("the connection made meanwhile"))
	if got := e.readApp(); string(got) != "the connection made meanwhile" {
		t.Fatalf("echo %q", got)
	}
	l.mu.Lock()
	c := l.conns[e.addr().String()]
	l.mu.Unlock()
	if c == nil || c.helloRandom != e.hello.random {
		t.Fatal("the late lookup replaced the connection")
	}
}

// TestSpoofedEpoch0AfterHandshake: after the handshake, an unauthenticated
// epoch-0 record never makes the server resend its last flight; the peer's
// authenticated retransmission of its Finished does, until the peer's
// first application data shows it completed.
func TestSpoofedEpoch0AfterHandshake(t *testing.T) {
	cfg := pskServerConfig()
	cfg.RetransmitInterval = 20 * time.Millisecond
	l := startEchoServer(t, cfg)
	e := rawPSKHandshake(t, l)
	time.Sleep(30 * time.Millisecond) // past the resend rate limit
	// A copy of the client's flight 5 as anyone can forge it: epoch 0.
	spoof := plainRecord(recordHandshake, 0, 99, fullHandshakeMessage(typeClientKeyExchange, 1, []byte{0, 7, 'c', 'l', 'i', 'e', 'n', 't', '1'}))
	e.send(spoof)
	e.expectNothing(100 * time.Millisecond)

	// The genuine Finished again, authenticated: the server's flight 6
	// comes back.
	seq := e.sendSeq - 1
	vd, err := finishedData(e.ms, e.transcript[:len(e.transcript)-handshakeHeaderLen-12-handshakeHeaderLen-12], true)
	if err != nil {
		t.Fatal(err)
	}
	again := e.record(recordHandshake, 1, fullHandshakeMessage(typeFinished, seq, vd))
	e.send(again)
	recs, err := e.read(time.Now().Add(rawTimeout))
	if err != nil {
		t.Fatalf("no resend for an authenticated retransmission: %v", err)
	}
	sawFinished := false
	for _, r := range recs {
		sawFinished = sawFinished || (r.contentType == recordHandshake && r.epoch == 1)
	}
	if !sawFinished {
		t.Fatal("the resend carried no Finished")
	}

	// Application data shows the peer completed: the flight is let go.
	e.sendApp([]byte("done"))
	if got := e.readApp(); string(got) != "done" {
		t.Fatalf("echo %q", got)
	}
	time.Sleep(30 * time.Millisecond)
	e.send(e.record(recordHandshake, 1, fullHandshakeMessage(typeFinished, seq, vd)))
	e.expectNothing(100 * time.Millisecond)
}

// TestHandshakeStateReleased: after the handshake neither side keeps the
// handshake's transport; the side that sent the last flight keeps only it.
func TestHandshakeStateReleased(t *testing.T) {
	l := startEchoServer(t, pskServerConfig())
	c, err := Dial("udp", l.Addr().(*net.UDPAddr), pskClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.hs != nil || c.first != nil {
		t.Fatal("the client kept its handshake state")
	}
	if c.final != nil {
		t.Fatal("the client of a full handshake kept a last flight: the server sends it")
	}
	echoOnce(t, c, "x")
}

// TestSuccessorReplacesOnlyWhenComplete: a peer with an association that
// starts over with a valid cookie (a rebooted client) gets a new handshake
// beside the old connection, which keeps working until the new handshake
// completes and replaces it (RFC 6347 §4.2.8).
func TestSuccessorReplacesOnlyWhenComplete(t *testing.T) {
	l := robustPSKServer(t)
	old := rawPSKHandshake(t, l)
	key := old.addr().String()
	// The same address, a new ClientHello: a client that lost its state.
	again := &rawEnd{t: t, conn: old.conn, peer: old.peer, rl: newRecordLayer(64), isClient: true, reasm: reassembler{budget: DefaultMaxHandshakeMemory}}
	again.cookieExchange(newClientHello(t, pskClientConfig()))
	if err := again.readServerFlight(); err != nil {
		t.Fatal(err)
	}
	if l.Stats().Connections != 2 {
		t.Fatalf("%d associations while the successor handshakes, want 2", l.Stats().Connections)
	}
	old.sendApp([]byte("old one"))
	if got := old.readApp(); string(got) != "old one" {
		t.Fatalf("the old connection during the new handshake: %q", got)
	}
	again.send(cat(again.pskKeyExchange([]byte("client1")), again.ccs(), again.finished()))
	again.expectFinished()
	waitFor(t, "the successor to replace the association", func() bool { return l.Stats().Connections == 1 })
	l.mu.Lock()
	c := l.conns[key]
	l.mu.Unlock()
	if c == nil || c.helloRandom != again.hello.random {
		t.Fatal("the completed successor did not replace the association")
	}
	again.sendApp([]byte("new one"))
	if got := again.readApp(); string(got) != "new one" {
		t.Fatalf("the new connection: %q", got)
	}
}

// TestReplayedResumptionHelloGetsACookie: one captured cookie-less
// resumption hello replayed from many addresses starts at most two
// handshakes; the other copies get a HelloVerifyRequest while they run, and
// for the cookie lifetime after one failed. The genuine client, which completes its
// resumptions, skips the cookie every time (TestClientStateResumption).
func TestReplayedResumptionHelloGetsACookie(t *testing.T) {
	cfg := pskServerConfig()
	cfg.RetransmitInterval = 20 * time.Millisecond
	l := startEchoServer(t, cfg)
	hello := resumptionHello(t, rawTicketSession(t, l))
	replay := func() uint8 {
		e := startRawClient(t, l)
		e.send(hello)
		buf := make([]byte, 2048)
		_ = e.conn.SetReadDeadline(time.Now().Add(rawTimeout))
		n, _, err := e.conn.ReadFromUDP(buf)
		if err != nil {
			t.Fatal(err)
		}
		return firstHandshakeType(buf[:n])
	}
	for i := range maxUnverifiedPerSession {
		if typ := replay(); typ != typeServerHello {
			t.Fatalf("copy %d got handshake type %d, want a ServerHello", i, typ)
		}
	}
	for i := range 5 {
		if typ := replay(); typ != typeHelloVerifyRequest {
			t.Fatalf("copy %d while the first runs got handshake type %d, want a HelloVerifyRequest", i, typ)
		}
	}
	waitFor(t, "the unanswered handshake to be given up", func() bool { return l.Stats().Handshakes == 0 })
	if typ := replay(); typ != typeHelloVerifyRequest {
		t.Fatalf("a copy after the first failed got handshake type %d, want a HelloVerifyRequest", typ)
	}
}
