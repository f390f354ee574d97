package dtls

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/internal/lossyproxy"
	"github.com/dtlsresume/dtlsresume/negotiation"
)

// TestConnectionIDsNegotiated: with RFC 9146 on both sides every handshake
// kind negotiates the CIDs each side asked for, both sides report them,
// and every protected record on the wire carries the receiver's CID
// (tls12_cid); a zero-length CID means records to that side carry none.
func TestConnectionIDsNegotiated(t *testing.T) {
	for _, sizes := range [][2]int{{8, 8}, {4, 0}, {0, 4}} { // server's, client's
		for _, typ := range []negotiation.Type{negotiation.SessionID, negotiation.SessionTicket, negotiation.ClientState} {
			scfg, ccfg := pskServerConfig(), pskClientConfig()
			scfg.SessionStore = newMapStore()
			scfg.Resumption, ccfg.Resumption = []negotiation.Type{typ}, []negotiation.Type{typ}
			scfg.ConnectionIDGenerator, ccfg.ConnectionIDGenerator = cidGen(sizes[0]), cidGen(sizes[1])
			ccfg.CIDPadding = 3
			ccfg.ClientSessionCache = NewLRUClientSessionCache(1)
			l := startEchoServer(t, scfg)
			var wire struct {
				sync.Mutex
				toServer, toClient map[uint8]int // outer content types of protected records
			}
			wire.toServer, wire.toClient = map[uint8]int{}, map[uint8]int{}
			proxy, err := lossyproxy.New(l.Addr().(*net.UDPAddr), lossyproxy.Config{Filter: func(dir lossyproxy.Direction, _ int, d []byte) lossyproxy.Verdict {
				n := sizes[0]
				m := wire.toServer
				if dir == lossyproxy.ToClient {
					n, m = sizes[1], wire.toClient
				}
				recs, _ := parseRecordsCID(d, n)
				wire.Lock()
				for _, r := range recs {
					if r.epoch == 1 {
						m[r.contentType]++
					}
				}
				wire.Unlock()
				return lossyproxy.Pass
			}})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				c, err := Dial("udp", proxy.Addr(), ccfg)
				if err != nil {
					t.Fatalf("sizes %v %v dial %d: %v", sizes, typ, i, err)
				}
				st := c.ConnectionState()
				if st.Resumed != (i == 1) || len(st.LocalCID) != sizes[1] || len(st.PeerCID) != sizes[0] {
					t.Fatalf("sizes %v %v dial %d: resumed=%v local %x peer %x", sizes, typ, i, st.Resumed, st.LocalCID, st.PeerCID)
				}
				echoOnce(t, c, "cid")
				c.Close()
			}
			proxy.Close()
			wire.Lock()
			for dir, m := range map[string]map[uint8]int{"to the server": wire.toServer, "to the client": wire.toClient} {
				receiver := sizes[0]
				if dir == "to the client" {
					receiver = sizes[1]
				}
				if receiver > 0 && (m[recordCID] == 0 || m[recordApplicationData] != 0 || m[recordHandshake] != 0) {
					t.Errorf("sizes %v %v: protected records %s: %v, want tls12_cid only", sizes, typ, dir, m)
				}
				if receiver == 0 && m[recordCID] != 0 {
					t.Errorf("sizes %v %v: protected records %s: %v, want none with a CID", sizes, typ, dir, m)
				}
			}
			wire.Unlock()
			l.Close()
		}
	}
}

func cidGen(n int) func() []byte {
	if n == 0 {
		return OnlySendCIDGenerator()
	}
	return RandomCIDGenerator(n)
}

// rebindingProxy relays a client to a server through lossyproxy, moving
// the client's flow to a new source port before the next datagram each
// time rebind is set (a NAT whose mapping expired).
func rebindingProxy(t *testing.T, server net.Addr, rebind *atomic.Bool) *lossyproxy.Proxy {
	p, err := lossyproxy.New(server.(*net.UDPAddr), lossyproxy.Config{Rebind: func(int) bool { return rebind.Swap(false) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// TestNATRebindingKeepsTheSession: the client's source port changes before
// every message; with connection IDs the server finds the session by CID,
// moves it to the new address once a record from there authenticates, and
// answers there. Without CIDs the same traffic is lost.
func TestNATRebindingKeepsTheSession(t *testing.T) {
	for _, withCID := range []bool{true, false} {
		scfg, ccfg := pskServerConfig(), pskClientConfig()
		if withCID {
			scfg.ConnectionIDGenerator, ccfg.ConnectionIDGenerator = RandomCIDGenerator(8), OnlySendCIDGenerator()
		}
		l, err := Listen("udp", &net.UDPAddr{IP: loopback1}, scfg)
		if err != nil {
			t.Fatal(err)
		}
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := l.Accept()
			if err == nil {
				accepted <- c
				go func() {
					defer c.Close()
					buf := make([]byte, 2048)
					for {
						n, err := c.Read(buf)
						if err != nil {
							return
						}
						_, _ = c.Write(buf[:n])
					}
				}()
			}
		}()
		var rebind atomic.Bool
		relay := rebindingProxy(t, l.Addr(), &rebind)
		c, err := Dial("udp", relay.Addr(), ccfg)
		if err != nil {
			t.Fatal(err)
		}
		server := <-accepted
		first := server.RemoteAddr().String()
		ports := map[string]bool{first: true}
		echoed := 0
		for i := range 5 {
			rebind.Store(true)
			msg := []byte{'m', byte('0' + i)}
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			buf := make([]byte, 64)
			if n, err := c.Read(buf); err == nil && bytes.Equal(buf[:n], msg) {
				echoed++
			}
			ports[server.RemoteAddr().String()] = true
		}
		c.Close()
		moved := server.RemoteAddr().String() != first
		l.Close()
		switch {
		case withCID && (echoed != 5 || !moved):
			t.Errorf("with CIDs: %d of 5 echoes after rebinding, moved=%v", echoed, moved)
		case !withCID && echoed != 0:
			t.Errorf("without CIDs: %d echoes came back across rebinding; the test does not rebind", echoed)
		}
		if withCID && len(ports) != 6 {
			t.Errorf("the server saw the client at %d addresses, want 6", len(ports))
		}
	}
}

// TestMovedAddressIsUnverified: a record with the session's CID from a new
// address moves the session there, but until a second authenticated record
// comes from there the new address gets only the amplification budget.
func TestMovedAddressIsUnverified(t *testing.T) {
	scfg, ccfg := pskServerConfig(), pskClientConfig()
	scfg.ConnectionIDGenerator, ccfg.ConnectionIDGenerator = RandomCIDGenerator(4), OnlySendCIDGenerator()
	l := startEchoServer(t, scfg)
	var rebind atomic.Bool
	relay := rebindingProxy(t, l.Addr(), &rebind)
	c, err := DialContext(context.Background(), "udp", relay.Addr(), ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoOnce(t, c, "before")
	rebind.Store(true)
	echoOnce(t, c, "after the move")
	echoOnce(t, c, "and again")
	l.mu.Lock()
	n := len(l.conns)
	var sc *Conn
	for _, v := range l.conns {
		sc = v
	}
	l.mu.Unlock()
	if n != 1 || sc == nil || sc.unverified.Load() {
		t.Fatalf("%d associations after the move, unverified=%v; want one, verified by its second record", n, sc != nil && sc.unverified.Load())
	}
}

// TestConnectionIDsUnderLoss: with connection IDs every handshake kind and
// every resumption type completes and echoes through 20% drop, 10%
// duplication and 10% reordering each way.
func TestConnectionIDsUnderLoss(t *testing.T) {
	tc := newTestCert(t)
	for _, kind := range handshakeKinds {
		for _, typ := range []negotiation.Type{negotiation.SessionID, negotiation.SessionTicket, negotiation.ClientState} {
			for seed := int64(1); seed <= 2; seed++ {
				t.Run(fmt.Sprintf("%s/%v/seed%d", kind.name, typ, seed), func(t *testing.T) {
					t.Parallel()
					scfg := lossyTimers(kind.server(tc))
					scfg.SessionStore = newMapStore()
					scfg.Resumption = []negotiation.Type{typ}
					scfg.ConnectionIDGenerator = RandomCIDGenerator(6)
					l := startEchoServer(t, scfg)
					proxy, err := lossyproxy.New(l.Addr().(*net.UDPAddr), lossyproxy.Config{Drop: 0.2, Duplicate: 0.1, Reorder: 0.1, Seed: seed})
					if err != nil {
						t.Fatal(err)
					}
					defer proxy.Close()
					ccfg := lossyTimers(kind.client(tc))
					ccfg.Resumption = []negotiation.Type{typ}
					ccfg.ConnectionIDGenerator = RandomCIDGenerator(3)
					if ccfg.PSK == nil {
						ccfg.ClientStateKey = bytes.Repeat([]byte{7}, 16) // a certificate client without a key of its own
					}
					ccfg.ClientSessionCache = NewLRUClientSessionCache(1)
					for i := range 2 {
						c, err := DialContext(context.Background(), "udp", proxy.Addr(), ccfg)
						if err != nil {
							t.Fatalf("dial %d under loss: %v", i, err)
						}
						if st := c.ConnectionState(); len(st.PeerCID) != 6 || len(st.LocalCID) != 3 {
							t.Fatalf("dial %d: CIDs %x / %x", i, st.LocalCID, st.PeerCID)
						}
						echoUnderLoss(t, c, "cid storm")
						c.Close()
					}
				})
			}
		}
	}
}

// TestBadCIDsAreDropped: records with an unknown CID, a CID of the wrong
// length, or our CID but a forged body, from a new address, are dropped
// and do not move the session; the genuine peer keeps working.
func TestBadCIDsAreDropped(t *testing.T) {
	scfg, ccfg := pskServerConfig(), pskClientConfig()
	scfg.ConnectionIDGenerator, ccfg.ConnectionIDGenerator = RandomCIDGenerator(4), OnlySendCIDGenerator()
	l := startEchoServer(t, scfg)
	c, err := Dial("udp", l.Addr().(*net.UDPAddr), ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoOnce(t, c, "genuine")
	cid := c.ConnectionState().PeerCID
	l.mu.Lock()
	sc := l.cids[string(cid)]
	l.mu.Unlock()
	if sc == nil {
		t.Fatal("the server's connection is not indexed by its CID")
	}
	home := sc.RemoteAddr().String()
	attacker := loopbackUDP(t)
	cidRecord := func(cid []byte, body []byte) []byte {
		h := append(marshalRecordHeader(nil, recordCID, versionDTLS12, 1, 1<<40, 0)[:11], cid...)
		h = append(h, byte(len(body)>>8), byte(len(body)))
		return append(h, body...)
	}
	body := make([]byte, 40)
	for name, d := range map[string][]byte{
		"unknown CID":      cidRecord([]byte{9, 9, 9, 9}, body),
		"short CID":        cidRecord(cid[:2], body),
		"forged with ours": cidRecord(cid, body),
	} {
		if _, err := attacker.WriteTo(d, l.Addr()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		if got := sc.RemoteAddr().String(); got != home {
			t.Fatalf("%s moved the session to %s", name, got)
		}
	}
	attacker.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, _, err := attacker.ReadFrom(make([]byte, 2048)); err == nil {
		t.Fatalf("the attacker got %d bytes back", n)
	}
	echoOnce(t, c, "still genuine")
}
