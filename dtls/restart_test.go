package dtls

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/negotiation"
	"golang.org/x/crypto/cryptobyte"
)

// TestRestartKeepsConnections: a server saves its connections, stops, and
// a new Listener on the same address restores them: the client's next
// records are answered with no handshake, for PSK and ECDHE, full and
// resumed sessions of every type; the saved connections load once.
func TestRestartKeepsConnections(t *testing.T) {
	tc := newTestCert(t)
	for _, kind := range handshakeKinds {
		for _, typ := range []negotiation.Type{negotiation.SessionID, negotiation.SessionTicket, negotiation.ClientState} {
			t.Run(kind.name+"/"+typ.String(), func(t *testing.T) {
				store := newMapStore()
				scfg := kind.server(tc)
				scfg.SessionStore = newMapStore()
				scfg.Resumption = []negotiation.Type{typ}
				scfg.ConnectionIDGenerator = RandomCIDGenerator(8)
				l := startEchoServer(t, scfg)
				addr := l.Addr().(*net.UDPAddr)
				ccfg := kind.client(tc)
				ccfg.Resumption = []negotiation.Type{typ}
				ccfg.ClientSessionCache = NewLRUClientSessionCache(1)
				ccfg.ConnectionIDGenerator = OnlySendCIDGenerator()
				if ccfg.PSK == nil {
					ccfg.ClientStateKey = make([]byte, 16)
				}
				first, err := Dial("udp", addr, ccfg)
				if err != nil {
					t.Fatal(err)
				}
				first.Close()
				c, err := Dial("udp", addr, ccfg) // a resumed session
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if !c.ConnectionState().Resumed {
					t.Fatal("the second connection did not resume")
				}
				echoOnce(t, c, "before the restart")
				// The first connection's close_notify may still be on its
				// way: save once the server holds only the second.
				waitFor(t, "the first connection to close on the server", func() bool { return l.Stats().Connections == 1 })
				n, err := l.SaveConnections(context.Background(), store)
				if err != nil || n != 1 {
					t.Fatalf("saved %d connections: %v", n, err)
				}
				l.Close()
				// The same address, a new process.
				l2 := startEchoServerAt(t, addr, scfg)
				if n, err := l2.RestoreConnections(context.Background(), store); err != nil || n != 1 {
					t.Fatalf("restored %d: %v", n, err)
				}
				if n, _ := l2.RestoreConnections(context.Background(), store); n != 0 {
					t.Fatalf("the saved connections loaded twice (%d)", n)
				}
				before := c.ConnectionState()
				echoOnce(t, c, "after the restart")
				echoOnce(t, c, "and again")
				if after := c.ConnectionState(); after.HandshakeDatagramsSent != before.HandshakeDatagramsSent {
					t.Fatal("the client ran another handshake")
				}
			})
		}
	}
}

// BenchmarkSaveRestore100k measures graceful restart at gateway scale:
// 100,000 established connections with 8-byte CIDs are saved into a store
// and restored by a Listener on the same address. Reported: bytes per
// saved connection and milliseconds for each direction.
func BenchmarkSaveRestore100k(b *testing.B) {
	const n = 100000
	cfg := pskServerConfig()
	cfg.ConnectionIDGenerator = RandomCIDGenerator(8)
	for i := 0; i < b.N; i++ {
		l, err := Listen("udp", &net.UDPAddr{IP: loopback1}, cfg)
		if err != nil {
			b.Fatal(err)
		}
		addr := l.Addr().(*net.UDPAddr)
		// Established connections, made the way a restore makes them.
		block := make([]byte, cipherSuiteByID(uint16(TLS_PSK_WITH_AES_128_CCM_8)).keyBlockLen())
		for j := 0; j < n; j++ {
			var rec cryptobyte.Builder
			ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 2 + byte(j>>16), byte(j >> 8), byte(j)}), 40000)
			a, _ := ap.MarshalBinary()
			rec.AddUint8(savedConnVersion)
			rec.AddUint16(uint16(TLS_PSK_WITH_AES_128_CCM_8))
			rec.AddBytes(block)
			rec.AddUint48(uint64(j))
			rec.AddUint48(uint64(j))
			rec.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(binary.BigEndian.AppendUint64(nil, uint64(j))) })
			rec.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) {})
			rec.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(a) })
			rec.AddUint8(1)
			rec.AddUint8(uint8(negotiation.SessionTicket))
			rec.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte("device-000000")) })
			rec.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) {})
			if _, err := l.importState(rec.BytesOrPanic()); err != nil {
				b.Fatal(err)
			}
		}
		store := newMapStore()
		start := time.Now()
		saved, err := l.SaveConnections(context.Background(), store)
		save := time.Since(start)
		if err != nil || saved != n {
			b.Fatalf("saved %d: %v", saved, err)
		}
		total := 0
		for _, v := range store.m {
			total += len(v)
		}
		l.Close()
		var l2 *Listener
		for try := 0; try < 50; try++ {
			if l2, err = Listen("udp", addr, cfg); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		restored, err := l2.RestoreConnections(context.Background(), store)
		restore := time.Since(start)
		if err != nil || restored != n {
			b.Fatalf("restored %d: %v", restored, err)
		}
		l2.Close()
		b.ReportMetric(float64(total)/n, "B/conn")
		b.ReportMetric(float64(save.Milliseconds()), "save-ms")
		b.ReportMetric(float64(restore.Milliseconds()), "restore-ms")
	}
}
