package lossyproxy

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// echoServer is a UDP echo server on 127.0.0.1 that records what it got.
type echoServer struct {
	conn *net.UDPConn
	wg   sync.WaitGroup

	mu    sync.Mutex
	got   []string
	froms map[string]bool
}

func newEchoServer(t *testing.T) *echoServer {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{conn: c, froms: map[string]bool{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		buf := make([]byte, maxDatagram)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			s.mu.Lock()
			s.got = append(s.got, string(buf[:n]))
			s.froms[from.String()] = true
			s.mu.Unlock()
			_, _ = c.WriteToUDP(buf[:n], from)
		}
	}()
	t.Cleanup(func() {
		c.Close()
		s.wg.Wait()
	})
	return s
}

func (s *echoServer) addr() *net.UDPAddr { return s.conn.LocalAddr().(*net.UDPAddr) }

func (s *echoServer) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

func (s *echoServer) sources() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.froms)
}

// waitReceived waits until the server has n datagrams and returns them.
func (s *echoServer) waitReceived(t *testing.T, n int, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := s.received()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("echo server got %d datagrams within %v, want %d: %q", len(got), timeout, n, got)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newProxy(t *testing.T, server *net.UDPAddr, cfg Config) *Proxy {
	t.Helper()
	p, err := New(server, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// dialClient returns a client socket connected to the proxy.
func dialClient(t *testing.T, p *Proxy) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp4", nil, p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func send(t *testing.T, c *net.UDPConn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
}

// readAll reads datagrams until want have arrived (then waits quiet more for
// extras) or timeout passes.
func readAll(t *testing.T, c *net.UDPConn, want int, timeout, quiet time.Duration) []string {
	t.Helper()
	var got []string
	buf := make([]byte, maxDatagram)
	deadline := time.Now().Add(timeout)
	for {
		d := deadline
		if len(got) >= want {
			d = time.Now().Add(quiet)
		}
		if err := c.SetReadDeadline(d); err != nil {
			t.Fatal(err)
		}
		n, err := c.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return got
			}
			t.Fatalf("read: %v", err)
		}
		got = append(got, string(buf[:n]))
	}
}

// waitStats polls until p.Stats() equals want.
func waitStats(t *testing.T, p *Proxy, want Stats) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		got := p.Stats()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Stats:\n got  %+v\n want %+v", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func msgs(n int) []string {
	var m []string
	for i := range n {
		m = append(m, fmt.Sprintf("msg-%03d", i))
	}
	return m
}

// dirStats builds the counters for datagrams of size bytes each.
func dirStats(size, received, forwarded, dropped, duplicated, reordered uint64) DirStats {
	return DirStats{
		Received: received, ReceivedBytes: received * size,
		Forwarded: forwarded, ForwardedBytes: forwarded * size,
		Dropped: dropped, Duplicated: duplicated, Reordered: reordered,
	}
}

const msgSize = uint64(len("msg-000"))

func TestPassesAllInOrder(t *testing.T) {
	srv := newEchoServer(t)
	p := newProxy(t, srv.addr(), Config{Seed: 1})
	c := dialClient(t, p)
	want := msgs(50)
	for _, m := range want {
		send(t, c, m)
	}
	got := readAll(t, c, len(want), 5*time.Second, 100*time.Millisecond)
	if !slices.Equal(got, want) {
		t.Fatalf("client got %q, want %q", got, want)
	}
	if s := srv.received(); !slices.Equal(s, want) {
		t.Fatalf("server got %q, want %q", s, want)
	}
	d := dirStats(msgSize, 50, 50, 0, 0, 0)
	waitStats(t, p, Stats{ToServer: d, ToClient: d})
}

func TestDropAll(t *testing.T) {
	srv := newEchoServer(t)
	p := newProxy(t, srv.addr(), Config{Drop: 1, Seed: 1})
	c := dialClient(t, p)
	for _, m := range msgs(20) {
		send(t, c, m)
	}
	waitStats(t, p, Stats{ToServer: dirStats(msgSize, 20, 0, 20, 0, 0)})
	if got := readAll(t, c, 1, 200*time.Millisecond, 0); len(got) != 0 {
		t.Fatalf("client got %q through a Drop=1 proxy", got)
	}
	if s := srv.received(); len(s) != 0 {
		t.Fatalf("server got %q through a Drop=1 proxy", s)
	}
}

func TestDuplicateAll(t *testing.T) {
	srv := newEchoServer(t)
	p := newProxy(t, srv.addr(), Config{Duplicate: 1, Seed: 1})
	c := dialClient(t, p)
	sent := msgs(10)
	for _, m := range sent {
		send(t, c, m)
	}
	// Each datagram is doubled on the way in, and each echo doubled on the
	// way out: four copies reach the client.
	got := readAll(t, c, 40, 5*time.Second, 200*time.Millisecond)
	if len(got) != 40 {
		t.Fatalf("client got %d datagrams, want 40: %q", len(got), got)
	}
	for _, m := range sent {
		if n := count(got, m); n != 4 {
			t.Errorf("client got %q %d times, want 4", m, n)
		}
		if n := count(srv.received(), m); n != 2 {
			t.Errorf("server got %q %d times, want 2", m, n)
		}
	}
	waitStats(t, p, Stats{
		ToServer: dirStats(msgSize, 10, 20, 0, 10, 0),
		ToClient: dirStats(msgSize, 20, 40, 0, 20, 0),
	})
}

func count(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

// reorderRun sends 20 datagrams in a burst through a Reorder=0.5 proxy and
// returns the order the server saw them in and the number held back. The
// hold is long (300ms) so the burst is surely over before a held datagram is
// released: then the datagrams not held arrive first.
func reorderRun(t *testing.T, seed int64) (order []string, held int) {
	srv := newEchoServer(t)
	// Only the client → server direction is reordered: drop the echoes.
	p := newProxy(t, srv.addr(), Config{
		Reorder: 0.5, ReorderDelay: 300 * time.Millisecond, Seed: seed,
		Filter: func(dir Direction, n int, b []byte) Verdict {
			if dir == ToClient {
				return Drop
			}
			return Default
		},
	})
	c := dialClient(t, p)
	sent := msgs(20)
	for _, m := range sent {
		send(t, c, m)
	}
	order = srv.waitReceived(t, len(sent), 5*time.Second)
	if len(order) != len(sent) {
		t.Fatalf("server got %d datagrams, want %d: %q", len(order), len(sent), order)
	}
	sorted := slices.Clone(order)
	slices.Sort(sorted)
	if !slices.Equal(sorted, sent) {
		t.Fatalf("server got %q, want each of %q once", order, sent)
	}
	st := p.Stats().ToServer
	if st.Forwarded != 20 || st.Dropped != 0 || st.Duplicated != 0 {
		t.Fatalf("ToServer stats %+v", st)
	}
	return order, int(st.Reordered)
}

func TestReorderSwaps(t *testing.T) {
	order, held := reorderRun(t, 42)
	t.Logf("server order with seed 42: %q (%d held)", order, held)
	if held == 0 || held == len(order) {
		t.Fatalf("seed 42 held %d of %d datagrams; pick a seed that holds some", held, len(order))
	}
	swapped := false
	for i := 1; i < len(order); i++ {
		if order[i] < order[i-1] {
			swapped = true
		}
	}
	if !swapped {
		t.Fatalf("no datagram overtook another: %q", order)
	}
	// The first len-held arrivals are the datagrams not held, in order.
	if !slices.IsSorted(order[:len(order)-held]) {
		t.Fatalf("datagrams not held arrived out of order: %q", order)
	}

	// Same seed, same decisions.
	order2, held2 := reorderRun(t, 42)
	if held2 != held {
		t.Fatalf("second run with seed 42 held %d, first %d", held2, held)
	}
	a, b := slices.Clone(order[:len(order)-held]), slices.Clone(order2[:len(order2)-held2])
	if !slices.Equal(a, b) {
		t.Fatalf("seed 42 passed %q first, then %q", a, b)
	}
}

// TestDecisionsDeterministic checks that the decision sequence depends only
// on the seed and direction, without any timing.
func TestDecisionsDeterministic(t *testing.T) {
	srv := newEchoServer(t)
	cfg := Config{Drop: 0.3, Duplicate: 0.3, Reorder: 0.3, Seed: 7}
	run := func(cfg Config) (out [2][]string) {
		p := newProxy(t, srv.addr(), cfg)
		for i := range 200 {
			for _, d := range []Direction{ToClient, ToServer} {
				if d == ToClient && i%3 == 0 {
					continue // interleave unevenly
				}
				drop, dup, hold := p.decide(d, nil)
				out[d] = append(out[d], fmt.Sprint(drop, dup, hold))
			}
		}
		return out
	}
	a, b := run(cfg), run(cfg)
	if !slices.Equal(a[ToServer], b[ToServer]) || !slices.Equal(a[ToClient], b[ToClient]) {
		t.Fatal("same seed gave different decisions")
	}
	if slices.Equal(a[ToServer][:100], a[ToClient][:100]) {
		t.Fatal("both directions share one stream")
	}
	cfg.Seed = 8
	if c := run(cfg); slices.Equal(a[ToServer], c[ToServer]) {
		t.Fatal("different seeds gave the same decisions")
	}
	var drops, dups, holds int
	for _, s := range a[ToServer] {
		var drop, dup, hold bool
		fmt.Sscan(s, &drop, &dup, &hold)
		if drop {
			drops++
		}
		if dup {
			dups++
		}
		if hold {
			holds++
		}
	}
	// 200 draws at p=0.3: expect 60 drops; duplicates and holds among the 140
	// left: about 42. Loose bounds, the seed is fixed anyway.
	if drops < 35 || drops > 85 || dups < 20 || dups > 65 || holds < 20 || holds > 65 {
		t.Fatalf("drops %d dups %d holds %d out of 200 at p=0.3", drops, dups, holds)
	}
}

func TestFilterDropsSecondServerDatagram(t *testing.T) {
	srv := newEchoServer(t)
	type call struct {
		dir Direction
		n   int
		msg string
	}
	var mu sync.Mutex
	var calls []call
	p := newProxy(t, srv.addr(), Config{Seed: 1, Filter: func(dir Direction, n int, b []byte) Verdict {
		mu.Lock()
		calls = append(calls, call{dir, n, string(b)})
		mu.Unlock()
		if dir == ToClient && n == 1 {
			return Drop
		}
		return Default
	}})
	c := dialClient(t, p)
	for i, m := range msgs(3) {
		send(t, c, m)
		timeout := 2 * time.Second
		if i == 1 {
			timeout = 300 * time.Millisecond
		}
		got := readAll(t, c, 1, timeout, 0)
		if i == 1 {
			if len(got) != 0 {
				t.Fatalf("second echo was not dropped: got %q", got)
			}
			continue
		}
		if len(got) != 1 || got[0] != m {
			t.Fatalf("echo of %q: got %q", m, got)
		}
	}
	waitStats(t, p, Stats{
		ToServer: dirStats(msgSize, 3, 3, 0, 0, 0),
		ToClient: dirStats(msgSize, 3, 2, 1, 0, 0),
	})
	mu.Lock()
	defer mu.Unlock()
	want := []call{
		{ToServer, 0, "msg-000"}, {ToClient, 0, "msg-000"},
		{ToServer, 1, "msg-001"}, {ToClient, 1, "msg-001"},
		{ToServer, 2, "msg-002"}, {ToClient, 2, "msg-002"},
	}
	if !slices.Equal(calls, want) {
		t.Fatalf("Filter calls %v, want %v", calls, want)
	}
}

func TestFilterPassOverridesProbabilities(t *testing.T) {
	srv := newEchoServer(t)
	p := newProxy(t, srv.addr(), Config{Drop: 1, Duplicate: 1, Reorder: 1, Seed: 1,
		Filter: func(dir Direction, n int, b []byte) Verdict {
			if dir == ToClient || n == 0 {
				return Pass
			}
			return Default
		}})
	c := dialClient(t, p)
	for _, m := range msgs(3) {
		send(t, c, m)
	}
	got := readAll(t, c, 1, 2*time.Second, 200*time.Millisecond)
	if !slices.Equal(got, []string{"msg-000"}) {
		t.Fatalf("client got %q, want only msg-000", got)
	}
	waitStats(t, p, Stats{
		ToServer: dirStats(msgSize, 3, 1, 2, 0, 0),
		ToClient: dirStats(msgSize, 1, 1, 0, 0, 0),
	})
}

func TestSecondClientGetsOwnUpstream(t *testing.T) {
	srv := newEchoServer(t)
	p := newProxy(t, srv.addr(), Config{Seed: 1})
	c1, c2 := dialClient(t, p), dialClient(t, p)
	send(t, c1, "from-1")
	if got := readAll(t, c1, 1, 2*time.Second, 0); !slices.Equal(got, []string{"from-1"}) {
		t.Fatalf("client 1 got %q", got)
	}
	send(t, c2, "from-2")
	if got := readAll(t, c2, 1, 2*time.Second, 0); !slices.Equal(got, []string{"from-2"}) {
		t.Fatalf("client 2 got %q", got)
	}
	send(t, c1, "again-1")
	if got := readAll(t, c1, 1, 2*time.Second, 50*time.Millisecond); !slices.Equal(got, []string{"again-1"}) {
		t.Fatalf("client 1 got %q", got)
	}
	if got := readAll(t, c2, 1, 50*time.Millisecond, 0); len(got) != 0 {
		t.Fatalf("client 2 got client 1's echo %q", got)
	}
	if n := srv.sources(); n != 2 {
		t.Fatalf("server saw %d source addresses, want 2", n)
	}
}

func TestIgnoresStrangerOnUpstream(t *testing.T) {
	srv := newEchoServer(t)
	var upstream *net.UDPAddr
	p := newProxy(t, srv.addr(), Config{Seed: 1})
	c := dialClient(t, p)
	send(t, c, "hello")
	readAll(t, c, 1, 2*time.Second, 0)
	p.mu.Lock()
	for _, f := range p.flows {
		upstream = f.up.LocalAddr().(*net.UDPAddr)
	}
	p.mu.Unlock()
	stranger, err := net.DialUDP("udp4", nil, upstream)
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	if _, err := stranger.Write([]byte("spoof")); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, c, 1, 200*time.Millisecond, 0); len(got) != 0 {
		t.Fatalf("client got %q from a stranger", got)
	}
	if st := p.Stats().ToClient; st.Received != 1 {
		t.Fatalf("ToClient.Received = %d, want 1", st.Received)
	}
}

func TestCloseIsPromptAndLeaksNothing(t *testing.T) {
	srv := newEchoServer(t)
	before := runtime.NumGoroutine()
	p, err := New(srv.addr(), Config{Reorder: 1, ReorderDelay: time.Hour, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	c := dialClient(t, p)
	for _, m := range msgs(5) {
		send(t, c, m)
	}
	deadline := time.Now().Add(3 * time.Second)
	for p.Stats().ToServer.Reordered < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", p.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %v", d)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if s := srv.received(); len(s) != 0 {
		t.Fatalf("held datagrams were sent: %q", s)
	}
	// Sending to a closed proxy is harmless.
	_, _ = c.Write([]byte("late"))
	deadline = time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines: %d before, %d after Close\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}
	for name, tc := range map[string]struct {
		addr *net.UDPAddr
		cfg  Config
	}{
		"nil server":     {nil, Config{}},
		"no port":        {&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, Config{}},
		"not loopback":   {&net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 9}, Config{}},
		"drop > 1":       {lo, Config{Drop: 1.5}},
		"duplicate < 0":  {lo, Config{Duplicate: -0.1}},
		"reorder NaN":    {lo, Config{Reorder: nan()}},
		"negative delay": {lo, Config{ReorderDelay: -time.Millisecond}},
	} {
		if p, err := New(tc.addr, tc.cfg); err == nil {
			p.Close()
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func nan() float64 {
	zero := 0.0
	return zero / zero
}

func TestIPv6Server(t *testing.T) {
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer c.Close()
	p := newProxy(t, c.LocalAddr().(*net.UDPAddr), Config{Seed: 1})
	cl := dialClient(t, p)
	send(t, cl, "v6")
	buf := make([]byte, 100)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, from, err := c.ReadFromUDP(buf)
	if err != nil || string(buf[:n]) != "v6" {
		t.Fatalf("got %q, %v", buf[:n], err)
	}
	if !from.IP.Equal(net.IPv6loopback) {
		t.Fatalf("upstream source %v, want ::1", from)
	}
}
