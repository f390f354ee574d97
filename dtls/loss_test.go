package dtls

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/internal/lossyproxy"
)

// lossyTimers keep loss tests short: a lost flight costs tens of
// milliseconds instead of a second.
func lossyTimers(c *Config) *Config {
	c.RetransmitInterval = 40 * time.Millisecond
	c.RetransmitMax = 640 * time.Millisecond
	c.HandshakeTimeout = 20 * time.Second
	return c
}

type handshakeKind struct {
	name   string
	server func(testCert) *Config
	client func(testCert) *Config
}

var handshakeKinds = []handshakeKind{
	{"PSK-CCM8", func(testCert) *Config { return pskServerConfig() }, func(testCert) *Config {
		c := pskClientConfig()
		c.CipherSuites = []CipherSuiteID{TLS_PSK_WITH_AES_128_CCM_8}
		return c
	}},
	{"ECDHE-ECDSA-CCM8", func(tc testCert) *Config { return &Config{Certificates: []tls.Certificate{tc.cert}} }, func(tc testCert) *Config {
		return &Config{RootCAs: tc.pool, ServerName: "localhost", CipherSuites: []CipherSuiteID{TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8}}
	}},
	// CBC with encrypt-then-MAC (both sides are ours), and ECDHE over X25519.
	{"PSK-CBC", func(testCert) *Config { return pskServerConfig() }, func(testCert) *Config {
		c := pskClientConfig()
		c.CipherSuites = []CipherSuiteID{TLS_PSK_WITH_AES_128_CBC_SHA256}
		return c
	}},
	// ECDHE_PSK (RFC 5489) over P-384.
	{"ECDHE-PSK-CBC-P384", func(testCert) *Config { return pskServerConfig() }, func(testCert) *Config {
		c := pskClientConfig()
		c.CipherSuites = []CipherSuiteID{TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256}
		c.CurvePreferences = []CurveID{CurveP384}
		return c
	}},
	{"ECDHE-ECDSA-CBC-X25519", func(tc testCert) *Config { return &Config{Certificates: []tls.Certificate{tc.cert}} }, func(tc testCert) *Config {
		return &Config{RootCAs: tc.pool, ServerName: "localhost", CipherSuites: []CipherSuiteID{TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256},
			CurvePreferences: []CurveID{CurveX25519, CurveP256}}
	}},
}

// echoUnderLoss sends msg until its echo comes back: application data is
// not retransmitted by DTLS, so the test does what an application would.
func echoUnderLoss(t *testing.T, c *Conn, msg string) {
	t.Helper()
	buf := make([]byte, 2048)
	for attempt := 0; attempt < 50; attempt++ {
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := c.Read(buf)
		if err == nil {
			if string(buf[:n]) != msg {
				t.Fatalf("echo %q, want %q", buf[:n], msg)
			}
			return
		}
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			t.Fatal(err)
		}
	}
	t.Fatal("no echo through the lossy path after 50 attempts")
}

// TestHandshakeUnderLoss runs every handshake kind through a proxy that
// drops 20%, duplicates 10% and reorders 10% of datagrams each way, with
// several seeds and an MTU small enough to fragment certificates.
func TestHandshakeUnderLoss(t *testing.T) {
	tc := newTestCert(t)
	for _, kind := range handshakeKinds {
		for _, mtu := range []int{0, 300} {
			for seed := int64(1); seed <= 6; seed++ {
				t.Run(fmt.Sprintf("%s/mtu%d/seed%d", kind.name, mtu, seed), func(t *testing.T) {
					t.Parallel()
					scfg := lossyTimers(kind.server(tc))
					scfg.MTU = mtu
					l := startEchoServer(t, scfg)
					var biggest atomic.Int64
					proxy, err := lossyproxy.New(l.Addr().(*net.UDPAddr), lossyproxy.Config{
						Drop: 0.2, Duplicate: 0.1, Reorder: 0.1, Seed: seed,
						Filter: func(_ lossyproxy.Direction, _ int, d []byte) lossyproxy.Verdict {
							if int64(len(d)) > biggest.Load() {
								biggest.Store(int64(len(d)))
							}
							return lossyproxy.Default
						},
					})
					if err != nil {
						t.Fatal(err)
					}
					defer proxy.Close()
					ccfg := lossyTimers(kind.client(tc))
					ccfg.MTU = mtu
					start := time.Now()
					c, err := DialContext(context.Background(), "udp", proxy.Addr(), ccfg)
					if err != nil {
						t.Fatalf("handshake under loss: %v (proxy %+v)", err, proxy.Stats())
					}
					defer c.Close()
					echoUnderLoss(t, c, "through the storm")
					if mtu != 0 && biggest.Load() > int64(mtu) {
						t.Errorf("a datagram of %d bytes exceeded the MTU of %d", biggest.Load(), mtu)
					}
					st := proxy.Stats()
					t.Logf("handshake %v; dropped %d/%d, duplicated %d/%d, reordered %d/%d",
						time.Since(start).Round(time.Millisecond), st.ToServer.Dropped, st.ToClient.Dropped,
						st.ToServer.Duplicated, st.ToClient.Duplicated, st.ToServer.Reordered, st.ToClient.Reordered)
				})
			}
		}
	}
}

// TestLostFlights drops chosen flights once and checks that the timers and
// the peer-retransmission trigger recover each of them.
func TestLostFlights(t *testing.T) {
	tc := newTestCert(t)
	cases := []struct {
		name string
		dir  lossyproxy.Direction
		n    int
	}{
		{"first ClientHello", lossyproxy.ToServer, 0},
		{"HelloVerifyRequest", lossyproxy.ToClient, 0},
		{"ClientHello with cookie", lossyproxy.ToServer, 1},
		{"server flight 4", lossyproxy.ToClient, 1},
		{"client flight 5", lossyproxy.ToServer, 2},
		{"server flight 6", lossyproxy.ToClient, 2},
	}
	for _, kind := range handshakeKinds {
		for _, tcase := range cases {
			t.Run(kind.name+"/"+tcase.name, func(t *testing.T) {
				t.Parallel()
				l := startEchoServer(t, lossyTimers(kind.server(tc)))
				proxy, err := lossyproxy.New(l.Addr().(*net.UDPAddr), lossyproxy.Config{
					Filter: func(d lossyproxy.Direction, n int, _ []byte) lossyproxy.Verdict {
						if d == tcase.dir && n == tcase.n {
							return lossyproxy.Drop
						}
						return lossyproxy.Pass
					},
				})
				if err != nil {
					t.Fatal(err)
				}
				defer proxy.Close()
				c, err := DialContext(context.Background(), "udp", proxy.Addr(), lossyTimers(kind.client(tc)))
				if err != nil {
					t.Fatalf("handshake: %v", err)
				}
				defer c.Close()
				echoUnderLoss(t, c, "after a lost flight")
				if got := proxy.Stats().Dir(tcase.dir).Dropped; got != 1 {
					t.Fatalf("proxy dropped %d datagrams, want 1", got)
				}
			})
		}
	}
}
