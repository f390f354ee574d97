package dtls

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
)

var testPSK = []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}

func pskServerConfig() *Config {
	return &Config{
		PSK: func(id []byte) ([]byte, error) {
			if string(id) == "client1" {
				return testPSK, nil
			}
			return nil, errUnknownIdentity
		},
		RetransmitInterval: 200 * time.Millisecond,
	}
}

func pskClientConfig() *Config {
	return &Config{
		PSK:                func([]byte) ([]byte, error) { return testPSK, nil },
		PSKIdentityHint:    []byte("client1"),
		RetransmitInterval: 200 * time.Millisecond,
	}
}

type testCert struct {
	cert tls.Certificate
	pool *x509.CertPool
}

func newTestCert(t testing.TB) testCert {
	t.Helper()
	cert, err := selfsign.GenerateSelfSignedWithDNS("localhost", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return testCert{cert: cert, pool: pool}
}

// startEchoServer runs a Listener that echoes every datagram.
func startEchoServer(t testing.TB, cfg *Config) *Listener {
	t.Helper()
	return startEchoServerAt(t, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, cfg)
}

// startEchoServerAt is startEchoServer on a given address, which a previous
// Listener may have had a moment ago.
func startEchoServerAt(t testing.TB, addr *net.UDPAddr, cfg *Config) *Listener {
	t.Helper()
	var l *Listener
	var err error
	for i := 0; i < 50; i++ {
		if l, err = Listen("udp", addr, cfg); err == nil || addr.Port == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 2048)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	return l
}

func echoOnce(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf[:n], []byte(msg)) {
		t.Fatalf("echo = %q, want %q", buf[:n], msg)
	}
}

func TestHandshakeOwnPeers(t *testing.T) {
	tc := newTestCert(t)
	for _, suite := range CipherSuites() {
		t.Run(suite.String(), func(t *testing.T) {
			var scfg, ccfg *Config
			if cipherSuiteByID(uint16(suite)).usesPSK() {
				scfg, ccfg = pskServerConfig(), pskClientConfig()
			} else {
				scfg = &Config{Certificates: []tls.Certificate{tc.cert}}
				ccfg = &Config{RootCAs: tc.pool, ServerName: "localhost"}
			}
			ccfg.CipherSuites = []CipherSuiteID{suite}
			l := startEchoServer(t, scfg)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := DialContext(ctx, "udp", l.Addr().(*net.UDPAddr), ccfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			echoOnce(t, c, "hello "+suite.String())
			st := c.ConnectionState()
			if st.CipherSuite != suite || !st.ExtendedMasterSecret || st.Resumed {
				t.Fatalf("state = %+v", st)
			}
			// Full handshake with cookie: CH, CH+cookie, F5 sent; HVR, F4, F6 received.
			if st.HandshakeDatagramsSent != 3 || st.HandshakeDatagramsReceived != 3 {
				t.Errorf("datagrams sent/received = %d/%d, want 3/3", st.HandshakeDatagramsSent, st.HandshakeDatagramsReceived)
			}
		})
	}
}

var errUnknownIdentity = net.UnknownNetworkError("unknown identity")

// TestConcurrentHandshakesOnOneListener runs many clients at once against
// one listener, PSK and ECDHE mixed, and checks each gets its own echo.
func TestConcurrentHandshakesOnOneListener(t *testing.T) {
	tc := newTestCert(t)
	scfg := pskServerConfig()
	scfg.Certificates = []tls.Certificate{tc.cert}
	l := startEchoServer(t, scfg)
	const clients = 24
	errs := make(chan error, clients)
	for i := 0; i < clients; i++ {
		go func(i int) {
			ccfg := pskClientConfig()
			if i%2 == 1 {
				ccfg = &Config{RootCAs: tc.pool, ServerName: "localhost", RetransmitInterval: 200 * time.Millisecond}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			c, err := DialContext(ctx, "udp", l.Addr().(*net.UDPAddr), ccfg)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			msg := []byte("client " + string(rune('A'+i)))
			if _, err := c.Write(msg); err != nil {
				errs <- err
				return
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 100)
			n, err := c.Read(buf)
			if err == nil && !bytes.Equal(buf[:n], msg) {
				err = net.UnknownNetworkError("wrong echo " + string(buf[:n]))
			}
			errs <- err
		}(i)
	}
	for i := 0; i < clients; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestWrongPSKFailsFast: with different keys the server cannot open the
// client's Finished; after a few tries it says so with decrypt_error
// instead of both sides waiting for the handshake timeout.
func TestWrongPSKFailsFast(t *testing.T) {
	scfg := pskServerConfig()
	l := startEchoServer(t, scfg)
	ccfg := pskClientConfig()
	ccfg.PSK = func([]byte) ([]byte, error) { return []byte("not the right key"), nil }
	ccfg.HandshakeTimeout = 30 * time.Second
	start := time.Now()
	_, err := DialContext(context.Background(), "udp", l.Addr().(*net.UDPAddr), ccfg)
	var ae *AlertError
	if !errors.As(err, &ae) || !ae.Remote || alertDescription(ae.Description) != alertDecryptError {
		t.Fatalf("err = %v, want the peer's decrypt_error alert", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}

// TestCipherSuiteNames: every suite parses back from its OpenSSL and IANA
// names, and an unknown ID has no OpenSSL name.
func TestCipherSuiteNames(t *testing.T) {
	for _, id := range CipherSuites() {
		for _, name := range []string{id.OpenSSLName(), id.String()} {
			got, err := ParseCipherSuites(name)
			if err != nil || len(got) != 1 || got[0] != id {
				t.Errorf("ParseCipherSuites(%q) = %v, %v", name, got, err)
			}
		}
	}
	if n := CipherSuiteID(0x1301).OpenSSLName(); n != "" {
		t.Errorf("unknown suite named %q", n)
	}
}

// TestKeyLogWriter: both sides log the same NSS line per connection, full
// and resumed, and the secret in it is the one the connection uses.
func TestKeyLogWriter(t *testing.T) {
	var cliLog bytes.Buffer
	srvLog := &syncBuffer{}
	scfg := pskServerConfig()
	scfg.KeyLogWriter = srvLog
	l := startEchoServer(t, scfg)
	ccfg := pskClientConfig()
	ccfg.KeyLogWriter = &cliLog
	ccfg.ClientSessionCache = NewLRUClientSessionCache(1)
	for i := range 2 {
		c, err := Dial("udp", l.Addr().(*net.UDPAddr), ccfg)
		if err != nil {
			t.Fatal(err)
		}
		echoOnce(t, c, "k")
		if i == 1 && !c.ConnectionState().Resumed {
			t.Fatal("the second connection did not resume")
		}
		c.Close()
	}
	lines := strings.Split(strings.TrimSpace(cliLog.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("client key log has %d lines, want 2: %q", len(lines), cliLog.String())
	}
	for _, line := range lines {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "CLIENT_RANDOM" || len(f[1]) != 64 || len(f[2]) != 96 {
			t.Fatalf("not an NSS key log line: %q", line)
		}
	}
	if lines[0][:79] == lines[1][:79] {
		t.Fatal("two connections logged the same client random")
	}
	if strings.Fields(lines[0])[2] != strings.Fields(lines[1])[2] {
		t.Fatal("the resumed connection logged another master secret")
	}
	deadline := time.Now().Add(2 * time.Second)
	for srvLog.Len() < cliLog.Len() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if srvLog.String() != cliLog.String() {
		t.Fatalf("server and client key logs differ:\n%s\n%s", srvLog.String(), cliLog.String())
	}
}

// syncBuffer is a bytes.Buffer that another goroutine may write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Len()
}
