package interop

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/internal/dtlstest"
	"github.com/dtlsresume/dtlsresume/internal/lossyproxy"
	piondtls "github.com/pion/dtls/v3"
)

// cidCases are the connection ID lengths (RFC 9146) each side asks for:
// the server's and the client's; 0 is "I can send CIDs but need none".
var cidCases = [][2]int{{8, 8}, {8, 0}, {4, 4}, {0, 4}}

func ourCIDGen(n int) func() []byte {
	if n == 0 {
		return dtls.OnlySendCIDGenerator()
	}
	return dtls.RandomCIDGenerator(n)
}

func pionCIDGen(n int) func() []byte {
	if n == 0 {
		return piondtls.OnlySendCIDGenerator()
	}
	return piondtls.RandomCIDGenerator(n)
}

// TestCIDPionClientOurServer: pion/dtls v3's client with connection IDs
// against our Listener, PSK and ECDHE, every CID length pair.
func TestCIDPionClientOurServer(t *testing.T) {
	cert, pool := serverCert(t)
	for _, sc := range []suiteCase{suiteCases[0], suiteCases[1]} {
		for _, sizes := range cidCases {
			t.Run(fmt.Sprintf("%v/server %d client %d", sc.ours, sizes[0], sizes[1]), func(t *testing.T) {
				scfg, ccfg := ourServer(sc, cert), pionClient(sc, pool)
				scfg.ConnectionIDGenerator, ccfg.ConnectionIDGenerator = ourCIDGen(sizes[0]), pionCIDGen(sizes[1])
				l, err := dtls.Listen("udp", loopback(), scfg)
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				accepted := acceptOne(l)
				c := pionDial(t, l.Addr().(*net.UDPAddr), ccfg)
				roundTrip(t, c, "pion to us with CIDs")
				if st := <-accepted; len(st.LocalCID) != sizes[0] || len(st.PeerCID) != sizes[1] {
					t.Fatalf("local %x peer %x", st.LocalCID, st.PeerCID)
				}
			})
		}
	}
}

// TestCIDOurClientPionServer: our client with connection IDs against
// pion/dtls v3's server, PSK and ECDHE, every CID length pair.
func TestCIDOurClientPionServer(t *testing.T) {
	cert, pool := serverCert(t)
	for _, sc := range []suiteCase{suiteCases[0], suiteCases[1]} {
		for _, sizes := range cidCases {
			t.Run(fmt.Sprintf("%v/server %d client %d", sc.ours, sizes[0], sizes[1]), func(t *testing.T) {
				scfg, ccfg := pionServer(sc, cert), ourClient(sc, pool)
				scfg.ConnectionIDGenerator, ccfg.ConnectionIDGenerator, ccfg.CIDPadding = pionCIDGen(sizes[0]), ourCIDGen(sizes[1]), 5
				l, err := piondtls.Listen("udp", loopback(), scfg)
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				go dtlstest.ServeEcho(l, nil)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				c, err := dtls.DialContext(ctx, "udp", l.Addr().(*net.UDPAddr), ccfg)
				if err != nil {
					t.Fatalf("our handshake with pion: %v", err)
				}
				defer c.Close()
				roundTrip(t, c, "us to pion with CIDs")
				if st := c.ConnectionState(); len(st.LocalCID) != sizes[1] || len(st.PeerCID) != sizes[0] {
					t.Fatalf("local %x peer %x", st.LocalCID, st.PeerCID)
				}
			})
		}
	}
}

// TestCIDPionClientMovesAddress: a pion client whose source port changes
// before every message (a NAT rebinding) keeps its session with our server
// through its connection ID; each echo comes back to the new address.
func TestCIDPionClientMovesAddress(t *testing.T) {
	scfg := &dtls.Config{ConnectionIDGenerator: dtls.RandomCIDGenerator(8),
		PSK: func([]byte) ([]byte, error) { return psk, nil }}
	l, err := dtls.Listen("udp", loopback(), scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go dtlstest.ServeEcho(l, nil)
	var rebind atomic.Bool
	proxy, err := lossyproxy.New(l.Addr().(*net.UDPAddr), lossyproxy.Config{Rebind: func(int) bool { return rebind.Swap(false) }})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	ccfg := &piondtls.Config{CipherSuites: []piondtls.CipherSuiteID{piondtls.TLS_PSK_WITH_AES_128_CCM_8},
		PSK: func([]byte) ([]byte, error) { return psk, nil }, PSKIdentityHint: []byte(pskIdentity),
		ConnectionIDGenerator: piondtls.OnlySendCIDGenerator()}
	c := pionDial(t, proxy.Addr(), ccfg)
	for i := range 5 {
		rebind.Store(true)
		roundTrip(t, c, fmt.Sprintf("message %d from a new port", i))
	}
}
