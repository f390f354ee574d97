package dtls

import (
	"net"
	"runtime"
	"testing"
	"time"
)

// BenchmarkIdleConnHeap measures the live heap an idle established PSK
// connection costs a Listener, after GC: the "≤ 8 KiB" figure. The
// clients run in this process on sockets of their own, which are closed and
// dropped before the measurement, so only the server side is counted.
func BenchmarkIdleConnHeap(b *testing.B) {
	const n = 500
	cfg := pskServerConfig()
	l, err := Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	var held []net.Conn
	accepted := make(chan net.Conn, n)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	heap := func() uint64 {
		var ms runtime.MemStats
		for i := 0; i < 3; i++ {
			runtime.GC()
		}
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	for i := 0; i < b.N; i++ {
		before := heap()
		for j := 0; j < n; j++ {
			pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			c, err := Client(pc, l.Addr(), pskClientConfig())
			if err != nil {
				b.Fatal(err)
			}
			if err := c.Handshake(); err != nil {
				b.Fatal(err)
			}
			held = append(held, <-accepted)
			pc.Close()
			c.closeTransport()
		}
		after := heap()
		b.ReportMetric(float64(after-before)/n, "B/conn")
		for _, c := range held {
			c.Close()
		}
		held = held[:0]
	}
}

// BenchmarkHostileReplayPerSource measures what an unverified source
// costs the server under replay: each of 1,000 sources (distinct 127.x
// addresses) replays one captured resumption ClientHello and follows it
// with a fragment bomb of sixteen one-byte fragments declaring 64 KiB
// each. Reported: live heap and goroutine stack per source, and the
// handshakes the replays started, measured while they run.
func BenchmarkHostileReplayPerSource(b *testing.B) {
	cfg := pskServerConfig()
	cfg.RetransmitInterval = 2 * time.Second // state lives 8 intervals: long enough to measure
	l := startEchoServer(b, cfg)
	hello := resumptionHello(b, rawTicketSession(b, l))
	for i := 0; i < b.N; i++ {
		h, s, started := unverifiedSources(b, l, i, func(int) []byte { return hello })
		b.ReportMetric(h, "heap-B/source")
		b.ReportMetric(s, "stack-B/source")
		b.ReportMetric(float64(started), "handshakes")
	}
}

// BenchmarkUnverifiedHandshake measures one running cookie-less
// resumption from an address that never answers, each on a session of its
// own: what MaxHandshakes bounds and the 8-interval lifetime releases.
func BenchmarkUnverifiedHandshake(b *testing.B) {
	cfg := pskServerConfig()
	cfg.RetransmitInterval = 2 * time.Second
	l := startEchoServer(b, cfg)
	hellos := make([][]byte, hostileSources)
	for i := range hellos {
		hellos[i] = resumptionHello(b, rawTicketSession(b, l))
	}
	for i := 0; i < b.N; i++ {
		h, s, started := unverifiedSources(b, l, i, func(j int) []byte { return hellos[j] })
		if started < hostileSources {
			b.Fatalf("only %d of %d cookie-less resumptions started", started, hostileSources)
		}
		b.ReportMetric(h, "heap-B/handshake")
		b.ReportMetric(s, "stack-B/handshake")
	}
}

const hostileSources = 1000

// unverifiedSources sends hello(j) and then a fragment bomb from each of
// hostileSources addresses and returns the heap and stack per source while
// the handshakes they started run, and how many started.
func unverifiedSources(b *testing.B, l *Listener, round int, hello func(int) []byte) (heapPer, stackPer float64, started int) {
	stats := func() (heap, stack uint64) {
		var ms runtime.MemStats
		for i := 0; i < 3; i++ {
			runtime.GC()
		}
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc, ms.StackInuse
	}
	// The attacker's sockets are made before the first measurement: only
	// the server's side is counted.
	conns := make([]*net.UDPConn, 0, hostileSources)
	for j := 0; j < hostileSources; j++ {
		pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 1+byte(j/250), byte(round), 1+byte(j%250))})
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, pc)
	}
	defer func() {
		for _, pc := range conns {
			pc.Close()
		}
		for l.Stats().Handshakes > 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}()
	heap0, stack0 := stats()
	for j, pc := range conns {
		if _, err := pc.WriteTo(hello(j), l.Addr()); err != nil {
			b.Fatal(err)
		}
		if j%16 == 15 {
			// Paced below the lookup queue: past it the listener
			// answers with a cookie instead, which costs nothing.
			time.Sleep(5 * time.Millisecond)
		}
	}
	time.Sleep(100 * time.Millisecond)
	bomb := fragmentBomb()
	for _, pc := range conns {
		if _, err := pc.WriteTo(bomb, l.Addr()); err != nil {
			b.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	started = l.Stats().Handshakes
	heap1, stack1 := stats()
	return float64(int64(heap1)-int64(heap0)) / hostileSources, float64(int64(stack1)-int64(stack0)) / hostileSources, started
}
