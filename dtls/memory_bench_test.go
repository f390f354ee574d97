package dtls

import (
	"net"
	"runtime"
	"testing"
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
