package dtls

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestDialClosedPortFailsAtOnce: a dial to a port where nothing listens
// fails on the ICMP port unreachable, within milliseconds, with an error
// that names the address and the cause.
func TestDialClosedPortFailsAtOnce(t *testing.T) {
	pc := loopbackUDP(t)
	addr := pc.LocalAddr().(*net.UDPAddr)
	pc.Close() // now nothing listens there
	start := time.Now()
	_, err := DialContext(context.Background(), "udp", addr, pskClientConfig())
	took := time.Since(start)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("err = %v, want connection refused", err)
	}
	if took > time.Second {
		t.Fatalf("took %v: the refusal was not reported at once", took)
	}
	var he *HandshakeError
	if !errors.As(err, &he) || he.Peer != addr.String() || !strings.Contains(err.Error(), addr.String()) {
		t.Fatalf("the error does not name the address: %v", err)
	}
	if r, _ := ReasonOf(err); r != ReasonRefused {
		t.Fatalf("reason %q, want %q", r, ReasonRefused)
	}
	t.Logf("%v after %v", err, took.Round(time.Microsecond))
}

// TestTimeoutNamesAddressAndStage: a server that never answers makes the
// handshake time out with an error naming the address and what it waited
// for.
func TestTimeoutNamesAddressAndStage(t *testing.T) {
	silent := loopbackUDP(t) // bound, never answers: no ICMP either
	cfg := pskClientConfig()
	cfg.HandshakeTimeout = 300 * time.Millisecond
	_, err := Dial("udp", silent.LocalAddr().(*net.UDPAddr), cfg)
	want := "dtls: handshake with " + silent.LocalAddr().String() + " timed out waiting for ServerHello"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
	if r, _ := ReasonOf(err); r != ReasonTimeout {
		t.Fatalf("reason %q, want timeout", r)
	}
}

// TestFailureReasons: both sides classify the common failures the same
// bounded way: a wrong key, an unknown identity, no suite in common.
func TestFailureReasons(t *testing.T) {
	cases := []struct {
		name         string
		client       func(*Config)
		server       func(*Config)
		cli, srv     Reason
		serverDetail string
	}{
		{"wrong PSK", func(c *Config) { c.PSK = func([]byte) ([]byte, error) { return []byte("not the right key"), nil } }, nil,
			ReasonBadKey, ReasonBadKey, ""},
		{"unknown identity", func(c *Config) { c.PSKIdentityHint = []byte("intruder") }, nil,
			ReasonBadKey, ReasonUnknownIdentity, ""}, // to the client it looks like a wrong key (RFC 4279 §2)
		{"no common suite", func(c *Config) { c.CipherSuites = []CipherSuiteID{TLS_PSK_WITH_AES_128_GCM_SHA256} },
			func(c *Config) { c.CipherSuites = []CipherSuiteID{TLS_PSK_WITH_AES_128_CCM_8} },
			ReasonPeerAlert, ReasonNoCommonSuite, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var srvErr error
			scfg := pskServerConfig()
			if tc.server != nil {
				tc.server(scfg)
			}
			scfg.HandshakeObserver = func(_ ConnectionState, err error) {
				mu.Lock()
				srvErr = err
				mu.Unlock()
			}
			l := startEchoServer(t, scfg)
			ccfg := pskClientConfig()
			ccfg.HandshakeTimeout = 5 * time.Second
			tc.client(ccfg)
			_, err := Dial("udp", l.Addr().(*net.UDPAddr), ccfg)
			if r, _ := ReasonOf(err); r != tc.cli {
				t.Errorf("client: reason %q for %v, want %q", r, err, tc.cli)
			}
			waitFor(t, "the server's failure", func() bool { mu.Lock(); defer mu.Unlock(); return srvErr != nil })
			mu.Lock()
			defer mu.Unlock()
			if r, _ := ReasonOf(srvErr); r != tc.srv {
				t.Errorf("server: reason %q for %v, want %q", r, srvErr, tc.srv)
			}
			if !strings.Contains(srvErr.Error(), "handshake with 127.0.0.1:") {
				t.Errorf("the server's error does not name the peer: %v", srvErr)
			}
		})
	}
}
