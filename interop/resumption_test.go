package interop

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/internal/dtlstest"
	"github.com/dtlsresume/dtlsresume/internal/peers"
	"github.com/dtlsresume/dtlsresume/internal/testpki"
	"github.com/dtlsresume/dtlsresume/negotiation"
	"github.com/dtlsresume/dtlsresume/store"
	piondtlsv2 "github.com/pion/dtls/v2"
	piondtls "github.com/pion/dtls/v3"
)

// Session resumption (RFC 5246 session IDs and RFC 5077 tickets) against
// real peers, in both directions. Every test does a full handshake, then a
// second one that must resume, and checks the outcome on our side
// (ConnectionState.Resumed and .Resumption) and, for process peers, in the
// peer's own output.
//
// Peer output relied on (OpenSSL 3.0.22, GnuTLS 3.7.9):
//   - openssl s_client: "New, TLSv1.2, Cipher is X" (full handshake),
//     "Reused, TLSv1.2, Cipher is X" (resumed).
//   - openssl s_server: "CIPHER is X" on every connection, then
//     "Reused session-id" when it resumed; it prints that line for session-ID
//     and for ticket resumptions alike.
//   - gnutls-cli --resume: "*** This is a resumed session" before
//     "- Simple Client Mode:" when the second connection resumed.

// resumeSuites are the suites the process-peer tests run: one PSK, one
// certificate suite.
var resumeSuites = suiteCases[:2]

const resumeTimeout = 10 * time.Second

// ourResumeServer is a Listener whose accepted connections are echoed and
// whose ConnectionStates arrive, in accept order, on the returned channel.
func ourResumeServer(t *testing.T, cfg *dtls.Config) (*dtls.Listener, <-chan dtls.ConnectionState) {
	t.Helper()
	l, err := dtls.Listen("udp", loopback(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	states := make(chan dtls.ConnectionState, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			select {
			case states <- c.(*dtls.Conn).ConnectionState():
			default:
			}
			go dtlstest.Echo(c)
		}
	}()
	return l, states
}

// nextState returns the next accepted connection's state; which says which
// handshake it is for messages.
func nextState(t *testing.T, states <-chan dtls.ConnectionState, which string) dtls.ConnectionState {
	t.Helper()
	select {
	case st := <-states:
		return st
	case <-time.After(resumeTimeout):
		t.Fatalf("%s: our listener accepted no connection within %v", which, resumeTimeout)
		return dtls.ConnectionState{}
	}
}

// checkResumption asserts Resumed and Resumption of one side's state.
func checkResumption(t *testing.T, which string, st dtls.ConnectionState, resumed bool, want negotiation.Type) {
	t.Helper()
	if st.Resumed != resumed || st.Resumption != want {
		t.Errorf("%s: Resumed=%v Resumption=%v, want Resumed=%v Resumption=%v (suite %v, session ID %x)",
			which, st.Resumed, st.Resumption, resumed, want, st.CipherSuite, st.SessionID)
	}
}

func newMemoryStore() dtls.SessionStore { return store.NewMemory(store.MemoryConfig{}) }

// ourResumeClientConfig is our client's Config for a suite, with a fresh
// session cache.
func ourResumeClientConfig(p *testpki.PKI, sc suiteCase) *dtls.Config {
	cfg := ourClient(sc, p.Pool)
	cfg.ClientSessionCache = dtls.NewLRUClientSessionCache(8)
	cfg.HandshakeTimeout = resumeTimeout
	return cfg
}

func dialOurs(t *testing.T, which string, addr *net.UDPAddr, cfg *dtls.Config) *dtls.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), resumeTimeout)
	defer cancel()
	c, err := dtls.DialContext(ctx, "udp", addr, cfg)
	if err != nil {
		t.Fatalf("%s: our client's handshake: %v", which, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ---------------------------------------------------------------------------
// 1. openssl s_client against our Listener

// runSClient runs one s_client: it waits for want (the outcome line), sends
// a line and waits for our echo, then closes stdin so that s_client shuts
// down (writing -sess_out) and exits.
func runSClient(t *testing.T, openssl string, args []string, want, ping string) *peers.Process {
	t.Helper()
	cl := peers.Start(t, openssl, args...)
	if err := cl.WaitFor(want, resumeTimeout); err != nil {
		t.Fatal(err)
	}
	if err := cl.WriteStdin(ping + "\n"); err != nil {
		t.Fatal(err)
	}
	// s_client does not print its own input: the line is our echo.
	if err := cl.WaitFor(ping, resumeTimeout); err != nil {
		t.Fatal(err)
	}
	if err := cl.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	code, err := cl.Wait(resumeTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Fatalf("s_client exited with %d; output:\n%s", code, cl.Output())
	}
	return cl
}

// TestResumptionOpenSSLClientOurServer: s_client -sess_out, then s_client
// -sess_in against the same Listener.
func TestResumptionOpenSSLClientOurServer(t *testing.T) {
	openssl := peers.Require(t, "openssl")
	p := testpki.New(t)
	type mode struct {
		name     string
		noTicket bool // s_client -no_ticket on both runs
		store    bool // our server has a SessionStore
		resumes  bool
		want     negotiation.Type
	}
	modes := []mode{
		{"ticket", false, false, true, negotiation.SessionTicket},
		// A client that offers the ticket extension gets a ticket even
		// when the server could also keep a session ID.
		{"ticket-with-store", false, true, true, negotiation.SessionTicket},
		{"session-id", true, true, true, negotiation.SessionID},
		// Neither mechanism: an empty session ID and no ticket, so
		// s_client has nothing to save.
		{"none", true, false, false, negotiation.None},
	}
	for _, sc := range resumeSuites {
		for _, m := range modes {
			if m.name == "none" && !sc.psk {
				continue // one suite is enough for the negative case
			}
			t.Run(sc.ours.String()+"/"+m.name, func(t *testing.T) {
				cfg := ourServerConfig(p, sc)
				if m.store {
					cfg.SessionStore = newMemoryStore()
				}
				l, states := ourResumeServer(t, cfg)
				sess := filepath.Join(t.TempDir(), "session.pem")
				cipher := opensslName(sc.ours)
				args := sClientArgs(l.Addr().String(), sc, p)
				if m.noTicket {
					args = append(args, "-no_ticket")
				}

				cl := runSClient(t, openssl, append(args, "-sess_out", sess), "New, TLSv1.2, Cipher is "+cipher, "first from openssl")
				first := nextState(t, states, "full handshake")
				checkResumption(t, "our server, full handshake", first, false, m.want)
				if !m.resumes {
					// OpenSSL saves only resumable sessions.
					if _, err := os.Stat(sess); !errors.Is(err, os.ErrNotExist) {
						t.Fatalf("s_client saved a session (%v) that our server did not make resumable", err)
					}
					if !regexp.MustCompile(`(?m)^\s*Session-ID: *$`).MatchString(cl.Output()) {
						t.Fatalf("s_client shows a session ID although our server has no SessionStore")
					}
					return
				}
				if fi, err := os.Stat(sess); err != nil || fi.Size() == 0 {
					t.Fatalf("s_client -sess_out wrote no session: %v", err)
				}

				runSClient(t, openssl, append(args, "-sess_in", sess), "Reused, TLSv1.2, Cipher is "+cipher, "second from openssl")
				second := nextState(t, states, "second handshake")
				checkResumption(t, "our server, second handshake", second, true, m.want)
				if second.CipherSuite != sc.ours {
					t.Errorf("second handshake: suite %v", second.CipherSuite)
				}
				if sc.psk && string(second.PSKIdentity) != pskIdentity {
					t.Errorf("second handshake: PSK identity %q", second.PSKIdentity)
				}
			})
		}
	}
}

// ---------------------------------------------------------------------------
// 2. our client against openssl s_server -naccept 2

// sServerRoundTrip sends a line to s_server (it prints it) and has it send
// one back.
func sServerRoundTrip(t *testing.T, srv *peers.Process, c *dtls.Conn, n int) {
	t.Helper()
	ping := fmt.Sprintf("ping %d from dtlsresume\n", n)
	if _, err := c.Write([]byte(ping)); err != nil {
		t.Fatal(err)
	}
	if err := srv.WaitFor(ping, resumeTimeout); err != nil {
		t.Fatal(err)
	}
	pong := fmt.Sprintf("pong %d from openssl\n", n)
	if err := srv.WriteStdin(pong); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(resumeTimeout))
	buf := make([]byte, 2048)
	k, err := c.Read(buf)
	if err != nil {
		t.Fatalf("reading s_server's reply: %v", err)
	}
	if got := string(buf[:k]); got != pong {
		t.Fatalf("s_server's reply %q, want %q", got, pong)
	}
}

// TestResumptionOurClientOpenSSLServer: two Dials with one session cache
// against one s_server.
func TestResumptionOurClientOpenSSLServer(t *testing.T) {
	openssl := peers.Require(t, "openssl")
	p := testpki.New(t)
	modes := []struct {
		name  string
		extra []string
		want  negotiation.Type
	}{
		{"default", nil, negotiation.SessionTicket},
		{"no_ticket", []string{"-no_ticket"}, negotiation.SessionID},
	}
	for _, sc := range resumeSuites {
		for _, m := range modes {
			t.Run(sc.ours.String()+"/"+m.name, func(t *testing.T) {
				srv, port := startSServer(t, openssl, sc, p, 2, m.extra...)
				cipher := opensslName(sc.ours)
				addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
				cfg := ourResumeClientConfig(p, sc)

				c1 := dialOurs(t, "full handshake", addr, cfg)
				checkResumption(t, "our client, full handshake", c1.ConnectionState(), false, m.want)
				sServerRoundTrip(t, srv, c1, 1)
				if err := srv.WaitFor("CIPHER is "+cipher, time.Second); err != nil {
					t.Fatal(err)
				}
				if strings.Contains(srv.Output(), "Reused session-id") {
					t.Fatalf("s_server reports the full handshake as reused")
				}
				if err := c1.Close(); err != nil {
					t.Fatal(err)
				}

				c2 := dialOurs(t, "second handshake", addr, cfg)
				st := c2.ConnectionState()
				checkResumption(t, "our client, second handshake", st, true, m.want)
				if st.CipherSuite != sc.ours {
					t.Errorf("second handshake: suite %v", st.CipherSuite)
				}
				sServerRoundTrip(t, srv, c2, 2)
				if err := srv.WaitForN("CIPHER is "+cipher, 2, time.Second); err != nil {
					t.Fatal(err)
				}
				if err := srv.WaitFor("Reused session-id", 5*time.Second); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// ---------------------------------------------------------------------------
// 3. gnutls-cli --resume against our Listener

// GnuTLS priorities that force exactly one of the suites we implement.
const (
	gnutlsPSKPriority  = "NORMAL:-KX-ALL:+PSK:-CIPHER-ALL:+AES-128-CCM-8"
	gnutlsCertPriority = "NORMAL:-KX-ALL:+ECDHE-ECDSA:-CIPHER-ALL:+AES-128-CCM-8"
)

// TestResumptionGnuTLSClientOurServer: gnutls-cli --resume connects twice.
func TestResumptionGnuTLSClientOurServer(t *testing.T) {
	cli := peers.Require(t, "gnutls-cli")
	p := testpki.New(t)
	cases := []struct {
		name      string
		sc        suiteCase
		noTickets bool
		store     bool
		want      negotiation.Type
	}{
		{"psk/ticket", resumeSuites[0], false, false, negotiation.SessionTicket},
		{"psk/NO_TICKETS", resumeSuites[0], true, true, negotiation.SessionID},
		{"cert/ticket", resumeSuites[1], false, true, negotiation.SessionTicket},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ourServerConfig(p, tc.sc)
			if tc.store {
				cfg.SessionStore = newMemoryStore()
			}
			l, states := ourResumeServer(t, cfg)
			port := l.Addr().(*net.UDPAddr).Port
			priority := gnutlsCertPriority
			if tc.sc.psk {
				priority = gnutlsPSKPriority
			}
			if tc.noTickets {
				priority += ":%NO_TICKETS"
			}
			args := []string{"--udp", "-p", strconv.Itoa(port), "127.0.0.1", "--resume", "--priority", priority}
			if tc.sc.psk {
				args = append(args, "--pskusername", pskIdentity, "--pskkey", hex.EncodeToString(psk))
			} else {
				args = append(args, "--x509cafile", p.CAFile)
			}
			g := peers.Start(t, cli, args...)
			if err := g.WaitFor("- Simple Client Mode", 2*resumeTimeout); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(g.Output(), "*** This is a resumed session") {
				t.Errorf("gnutls-cli did not resume; output:\n%s", g.Output())
			}
			if err := g.WriteStdin("ping from gnutls\n"); err != nil {
				t.Fatal(err)
			}
			// gnutls-cli prints what it receives: our echo.
			if err := g.WaitFor("ping from gnutls", resumeTimeout); err != nil {
				t.Fatal(err)
			}
			if err := g.CloseStdin(); err != nil {
				t.Fatal(err)
			}
			if _, err := g.Wait(resumeTimeout); err != nil {
				t.Fatal(err)
			}
			first := nextState(t, states, "full handshake")
			checkResumption(t, "our server, full handshake", first, false, tc.want)
			second := nextState(t, states, "second handshake")
			checkResumption(t, "our server, second handshake", second, true, tc.want)
			if second.CipherSuite != tc.sc.ours {
				t.Errorf("second handshake: suite %v", second.CipherSuite)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// 4. our client against gnutls-serv

// TestResumptionOurClientGnuTLSServer: two Dials with one session cache
// against gnutls-serv --echo.
func TestResumptionOurClientGnuTLSServer(t *testing.T) {
	serv := peers.Require(t, "gnutls-serv")
	p := testpki.New(t)
	pskFile := filepath.Join(t.TempDir(), "psk.txt")
	if err := os.WriteFile(pskFile, []byte(pskIdentity+":"+hex.EncodeToString(psk)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	modes := []struct {
		name     string
		noTicket bool
		want     negotiation.Type
	}{
		{"default", false, negotiation.SessionTicket},
		{"noticket", true, negotiation.SessionID},
	}
	for _, sc := range resumeSuites {
		for _, m := range modes {
			t.Run(sc.ours.String()+"/"+m.name, func(t *testing.T) {
				port := peers.FreeUDPPort(t)
				args := []string{"--udp", "-p", strconv.Itoa(port), "--echo"}
				if sc.psk {
					args = append(args, "--pskpasswd", pskFile, "--priority", gnutlsPSKPriority)
				} else {
					args = append(args, "--x509certfile", p.CertFile, "--x509keyfile", p.KeyFile, "--priority", gnutlsCertPriority)
				}
				if m.noTicket {
					args = append(args, "--noticket")
				}
				peers.Start(t, serv, args...)
				peers.WaitUDPListening(t, port, resumeTimeout)
				addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
				cfg := ourResumeClientConfig(p, sc)

				c1 := dialOurs(t, "full handshake", addr, cfg)
				checkResumption(t, "our client, full handshake", c1.ConnectionState(), false, m.want)
				roundTrip(t, c1, "first to gnutls")
				if err := c1.Close(); err != nil {
					t.Fatal(err)
				}

				c2 := dialOurs(t, "second handshake", addr, cfg)
				st := c2.ConnectionState()
				checkResumption(t, "our client, second handshake", st, true, m.want)
				if st.CipherSuite != sc.ours {
					t.Errorf("second handshake: suite %v", st.CipherSuite)
				}
				roundTrip(t, c2, "second to gnutls")
			})
		}
	}
}

// ---------------------------------------------------------------------------
// 5. and 6. pion/dtls v3 and v2, in process

// pionStore is a map-based pion SessionStore (v2 and v3 have the same
// method set over their own Session types). A miss is (zero, nil), as pion
// expects: an error from Get aborts pion's handshake.
type pionStore[S any] struct {
	mu   sync.Mutex
	m    map[string]S
	sets int
}

func newPionStore[S any]() *pionStore[S] { return &pionStore[S]{m: make(map[string]S)} }

func (s *pionStore[S]) Set(key []byte, v S) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[string(key)] = v
	s.sets++
	return nil
}

func (s *pionStore[S]) Get(key []byte) (S, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[string(key)], nil
}

func (s *pionStore[S]) Del(key []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, string(key))
	return nil
}

func (s *pionStore[S]) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

var (
	_ piondtls.SessionStore   = (*pionStore[piondtls.Session])(nil)
	_ piondtlsv2.SessionStore = (*pionStore[piondtlsv2.Session])(nil)
)

// ourSessionIDServerConfig is our server for a pion client: pion offers no
// ticket extension, so the SessionStore is what makes sessions resumable.
func ourSessionIDServerConfig(cert tls.Certificate, sc suiteCase) *dtls.Config {
	cfg := ourServer(sc, cert)
	cfg.SessionStore = newMemoryStore()
	return cfg
}

// checkOurResumedServerSide checks our server's states for a pion client's
// full and resumed handshakes.
func checkOurResumedServerSide(t *testing.T, sc suiteCase, first, second dtls.ConnectionState) {
	t.Helper()
	checkResumption(t, "our server, full handshake", first, false, negotiation.SessionID)
	checkResumption(t, "our server, second handshake", second, true, negotiation.SessionID)
	if len(first.SessionID) == 0 || !bytes.Equal(first.SessionID, second.SessionID) {
		t.Errorf("session IDs: full %x, resumed %x", first.SessionID, second.SessionID)
	}
	if second.CipherSuite != sc.ours {
		t.Errorf("resumed suite %v", second.CipherSuite)
	}
	if sc.psk && string(second.PSKIdentity) != pskIdentity {
		t.Errorf("resumed PSK identity %q", second.PSKIdentity)
	}
	// Our server counts from the ClientHello it resumed on (no cookie
	// exchange): ServerHello, ChangeCipherSpec and Finished fit in one
	// datagram; pion sends its ChangeCipherSpec and Finished together.
	t.Logf("our server: full handshake %d datagrams out / %d in, %d+%d bytes; resumed %d out / %d in, %d+%d bytes",
		first.HandshakeDatagramsSent, first.HandshakeDatagramsReceived, first.HandshakeBytesSent, first.HandshakeBytesReceived,
		second.HandshakeDatagramsSent, second.HandshakeDatagramsReceived, second.HandshakeBytesSent, second.HandshakeBytesReceived)
	if second.HandshakeDatagramsSent != 1 || second.HandshakeDatagramsReceived != 2 {
		t.Errorf("our server, resumed handshake: %d datagrams sent / %d received, want 1 / 2",
			second.HandshakeDatagramsSent, second.HandshakeDatagramsReceived)
	}
	if second.HandshakeBytesSent+second.HandshakeBytesReceived >= first.HandshakeBytesSent+first.HandshakeBytesReceived {
		t.Errorf("resumed handshake (%d bytes) not smaller than the full one (%d bytes)",
			second.HandshakeBytesSent+second.HandshakeBytesReceived, first.HandshakeBytesSent+first.HandshakeBytesReceived)
	}
}

// pionSessionClient is a pion/dtls v3 client for suite sc with a session
// store of its own: dial runs a handshake and an echo with addr and returns
// pion's state.
func pionSessionClient(t *testing.T, sc suiteCase, pool *x509.CertPool, addr *net.UDPAddr) (*pionStore[piondtls.Session], func(which, msg string) piondtls.State) {
	ps := newPionStore[piondtls.Session]()
	ccfg := &piondtls.Config{
		CipherSuites:         []piondtls.CipherSuiteID{sc.pion},
		ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret,
		SessionStore:         ps,
	}
	if sc.psk {
		ccfg.PSK = func([]byte) ([]byte, error) { return psk, nil }
		ccfg.PSKIdentityHint = []byte(pskIdentity)
	} else {
		ccfg.RootCAs = pool
		ccfg.ServerName = "localhost"
	}
	return ps, func(which, msg string) piondtls.State {
		t.Helper()
		c, err := piondtls.Dial("udp", addr, ccfg)
		if err != nil {
			t.Fatalf("%s: %v", which, err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), resumeTimeout)
		defer cancel()
		if err := c.HandshakeContext(ctx); err != nil {
			t.Fatalf("%s: pion handshake: %v", which, err)
		}
		roundTrip(t, c, msg)
		st, _ := c.ConnectionState()
		return st
	}
}

// TestResumptionPionClientOurServer: pion/dtls v3's client with a pion
// SessionStore, twice against our Listener with a SessionStore.
func TestResumptionPionClientOurServer(t *testing.T) {
	cert, pool := serverCert(t)
	for _, sc := range suiteCases {
		t.Run(sc.ours.String(), func(t *testing.T) {
			l, states := ourResumeServer(t, ourSessionIDServerConfig(cert, sc))
			ps, dial := pionSessionClient(t, sc, pool, l.Addr().(*net.UDPAddr))
			s1 := dial("full handshake", "pion to us, 1")
			first := nextState(t, states, "full handshake")
			if ps.len() != 1 {
				t.Fatalf("pion's client stored %d sessions after the full handshake, want 1", ps.len())
			}
			s2 := dial("second handshake", "pion to us, 2")
			second := nextState(t, states, "second handshake")
			if !bytes.Equal(s1.SessionID, s2.SessionID) {
				t.Errorf("pion's session IDs: %x then %x", s1.SessionID, s2.SessionID)
			}
			checkOurResumedServerSide(t, sc, first, second)
		})
	}
}

// TestResumptionOurClientPionServer: our client twice against pion/dtls
// v3's Listener with a pion SessionStore.
func TestResumptionOurClientPionServer(t *testing.T) {
	cert, pool := serverCert(t)
	for _, sc := range suiteCases {
		t.Run(sc.ours.String(), func(t *testing.T) {
			ps := newPionStore[piondtls.Session]()
			scfg := &piondtls.Config{
				CipherSuites:         []piondtls.CipherSuiteID{sc.pion},
				ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret,
				SessionStore:         ps,
			}
			if sc.psk {
				scfg.PSK = func([]byte) ([]byte, error) { return psk, nil }
			} else {
				scfg.Certificates = []tls.Certificate{cert}
			}
			l, err := piondtls.Listen("udp", loopback(), scfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			go dtlstest.ServeEcho(l, nil)
			ccfg := ourPionClientConfig(sc, pool)
			checkOurClientResumes(t, l.Addr().(*net.UDPAddr), ccfg, func() int { return ps.len() })
		})
	}
}

// ourPionClientConfig is our client's Config for a pion server, with a
// fresh session cache.
func ourPionClientConfig(sc suiteCase, pool *x509.CertPool) *dtls.Config {
	cfg := ourClient(sc, pool)
	cfg.ExtendedMasterSecret = dtls.RequireExtendedMasterSecret
	cfg.ClientSessionCache = dtls.NewLRUClientSessionCache(8)
	cfg.HandshakeTimeout = resumeTimeout
	return cfg
}

// checkOurClientResumes dials addr twice with cfg and checks that the
// second handshake resumed the first's session by session ID.
func checkOurClientResumes(t *testing.T, addr *net.UDPAddr, cfg *dtls.Config, stored func() int) {
	t.Helper()
	c1 := dialOurs(t, "full handshake", addr, cfg)
	st1 := c1.ConnectionState()
	checkResumption(t, "our client, full handshake", st1, false, negotiation.SessionID)
	roundTrip(t, c1, "us to pion, 1")
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}
	if n := stored(); n != 1 {
		t.Errorf("pion's server stored %d sessions after the full handshake, want 1", n)
	}
	c2 := dialOurs(t, "second handshake", addr, cfg)
	st2 := c2.ConnectionState()
	checkResumption(t, "our client, second handshake", st2, true, negotiation.SessionID)
	if len(st1.SessionID) == 0 || !bytes.Equal(st1.SessionID, st2.SessionID) {
		t.Errorf("session IDs: full %x, resumed %x", st1.SessionID, st2.SessionID)
	}
	if st2.CipherSuite != cfg.CipherSuites[0] {
		t.Errorf("resumed suite %v", st2.CipherSuite)
	}
	roundTrip(t, c2, "us to pion, 2")
}

// TestResumptionPionV2ClientOurServer: pion/dtls v2's client with a pion
// SessionStore, twice against our Listener with a SessionStore.
func TestResumptionPionV2ClientOurServer(t *testing.T) {
	cert, pool := serverCert(t)
	for _, sc := range suiteCases {
		t.Run(sc.ours.String(), func(t *testing.T) {
			l, states := ourResumeServer(t, ourSessionIDServerConfig(cert, sc))
			ps := newPionStore[piondtlsv2.Session]()
			ccfg := &piondtlsv2.Config{
				CipherSuites:         []piondtlsv2.CipherSuiteID{piondtlsv2.CipherSuiteID(sc.ours)},
				ExtendedMasterSecret: piondtlsv2.RequireExtendedMasterSecret,
				SessionStore:         ps,
			}
			if sc.psk {
				ccfg.PSK = func([]byte) ([]byte, error) { return psk, nil }
				ccfg.PSKIdentityHint = []byte(pskIdentity)
			} else {
				ccfg.RootCAs = pool
				ccfg.ServerName = "localhost"
			}
			dial := func(which, msg string) piondtlsv2.State {
				ctx, cancel := context.WithTimeout(context.Background(), resumeTimeout)
				defer cancel()
				c, err := piondtlsv2.DialWithContext(ctx, "udp", l.Addr().(*net.UDPAddr), ccfg)
				if err != nil {
					t.Fatalf("%s: pion v2 handshake: %v", which, err)
				}
				defer c.Close()
				roundTrip(t, c, msg)
				return c.ConnectionState()
			}
			s1 := dial("full handshake", "pion v2 to us, 1")
			first := nextState(t, states, "full handshake")
			if ps.len() != 1 {
				t.Fatalf("pion v2's client stored %d sessions after the full handshake, want 1", ps.len())
			}
			s2 := dial("second handshake", "pion v2 to us, 2")
			second := nextState(t, states, "second handshake")
			if !bytes.Equal(s1.SessionID, s2.SessionID) {
				t.Errorf("pion v2's session IDs: %x then %x", s1.SessionID, s2.SessionID)
			}
			checkOurResumedServerSide(t, sc, first, second)
		})
	}
}

// TestResumptionOurClientPionV2Server: our client twice against pion/dtls
// v2's Listener with a pion SessionStore.
func TestResumptionOurClientPionV2Server(t *testing.T) {
	cert, pool := serverCert(t)
	for _, sc := range suiteCases {
		t.Run(sc.ours.String(), func(t *testing.T) {
			ps := newPionStore[piondtlsv2.Session]()
			scfg := &piondtlsv2.Config{
				CipherSuites:         []piondtlsv2.CipherSuiteID{piondtlsv2.CipherSuiteID(sc.ours)},
				ExtendedMasterSecret: piondtlsv2.RequireExtendedMasterSecret,
				SessionStore:         ps,
				ConnectContextMaker: func() (context.Context, func()) {
					return context.WithTimeout(context.Background(), resumeTimeout)
				},
			}
			if sc.psk {
				scfg.PSK = func([]byte) ([]byte, error) { return psk, nil }
			} else {
				scfg.Certificates = []tls.Certificate{cert}
			}
			l, err := piondtlsv2.Listen("udp", loopback(), scfg)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			t.Cleanup(func() { close(done); l.Close() })
			go func() {
				for {
					// v2's Accept runs the handshake; a failed one is an
					// error that does not end the listener.
					c, err := l.Accept()
					if err != nil {
						select {
						case <-done:
							return
						case <-time.After(10 * time.Millisecond):
							continue
						}
					}
					go dtlstest.Echo(c)
				}
			}()
			ccfg := ourPionClientConfig(sc, pool)
			checkOurClientResumes(t, l.Addr().(*net.UDPAddr), ccfg, func() int { return ps.len() })
		})
	}
}

// ---------------------------------------------------------------------------
// 7. our client and our server, on the wire

// wireProxy relays datagrams between clients and one server, one upstream
// socket per client address, and records every datagram it relays.
type wireProxy struct {
	pc     *net.UDPConn
	target *net.UDPAddr

	mu   sync.Mutex
	up   map[string]*net.UDPConn
	log  []wireDatagram
	wg   sync.WaitGroup
	done chan struct{}
}

type wireDatagram struct {
	client     int // the client's port
	fromClient bool
	size       int
	records    []string
}

func (d wireDatagram) String() string {
	dir := "server->client"
	if d.fromClient {
		dir = "client->server"
	}
	return fmt.Sprintf("%s (client port %d) %d bytes [%s]", dir, d.client, d.size, strings.Join(d.records, ", "))
}

func newWireProxy(t *testing.T, target *net.UDPAddr) *wireProxy {
	t.Helper()
	pc, err := net.ListenUDP("udp", loopback())
	if err != nil {
		t.Fatal(err)
	}
	p := &wireProxy{pc: pc, target: target, up: make(map[string]*net.UDPConn), done: make(chan struct{})}
	p.wg.Add(1)
	go p.fromClients()
	t.Cleanup(p.close)
	return p
}

func (p *wireProxy) Addr() *net.UDPAddr { return p.pc.LocalAddr().(*net.UDPAddr) }

func (p *wireProxy) record(caddr *net.UDPAddr, fromClient bool, d []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = append(p.log, wireDatagram{client: caddr.Port, fromClient: fromClient, size: len(d), records: describeRecords(d)})
}

// relayed returns the datagrams relayed so far between the client on port
// clientPort and the server.
func (p *wireProxy) relayed(clientPort int) []wireDatagram {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []wireDatagram
	for _, d := range p.log {
		if d.client == clientPort {
			out = append(out, d)
		}
	}
	return out
}

func (p *wireProxy) fromClients() {
	defer p.wg.Done()
	buf := make([]byte, 64*1024)
	for {
		n, caddr, err := p.pc.ReadFromUDP(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		up := p.up[caddr.String()]
		if up == nil {
			up, err = net.DialUDP("udp", nil, p.target)
			if err != nil {
				p.mu.Unlock()
				continue
			}
			p.up[caddr.String()] = up
			p.wg.Add(1)
			go p.fromServer(up, caddr)
		}
		p.mu.Unlock()
		p.record(caddr, true, buf[:n])
		_, _ = up.Write(buf[:n])
	}
}

func (p *wireProxy) fromServer(up *net.UDPConn, caddr *net.UDPAddr) {
	defer p.wg.Done()
	buf := make([]byte, 64*1024)
	for {
		n, err := up.Read(buf)
		if err != nil {
			select {
			case <-p.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ICMP port unreachable after the server closed
		}
		p.record(caddr, false, buf[:n])
		_, _ = p.pc.WriteToUDP(buf[:n], caddr)
	}
}

func (p *wireProxy) close() {
	close(p.done)
	p.pc.Close()
	p.mu.Lock()
	for _, up := range p.up {
		up.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

var handshakeTypeNames = map[byte]string{
	1: "ClientHello", 2: "ServerHello", 3: "HelloVerifyRequest", 4: "NewSessionTicket",
	11: "Certificate", 12: "ServerKeyExchange", 13: "CertificateRequest", 14: "ServerHelloDone",
	15: "CertificateVerify", 16: "ClientKeyExchange", 20: "Finished",
}

// describeRecords names the DTLS records of a datagram; the handshake
// messages of epoch-0 records by type, encrypted ones as "Encrypted(type)".
func describeRecords(d []byte) []string {
	var out []string
	for len(d) >= 13 {
		typ := d[0]
		epoch := binary.BigEndian.Uint16(d[3:5])
		n := int(binary.BigEndian.Uint16(d[11:13]))
		if 13+n > len(d) {
			return append(out, "truncated record")
		}
		body := d[13 : 13+n]
		d = d[13+n:]
		switch {
		case epoch != 0:
			out = append(out, fmt.Sprintf("Encrypted(%d)", typ))
		case typ == 20:
			out = append(out, "ChangeCipherSpec")
		case typ == 21:
			out = append(out, "Alert")
		case typ == 22:
			for len(body) >= 12 {
				name, ok := handshakeTypeNames[body[0]]
				if !ok {
					name = fmt.Sprintf("Handshake(%d)", body[0])
				}
				fragLen := int(body[9])<<16 | int(body[10])<<8 | int(body[11])
				out = append(out, name)
				if 12+fragLen > len(body) {
					break
				}
				body = body[12+fragLen:]
			}
		default:
			out = append(out, fmt.Sprintf("Record(%d)", typ))
		}
	}
	return out
}

type wireSummary struct {
	c2s, s2c           []wireDatagram
	c2sBytes, s2cBytes int
}

func summarize(log []wireDatagram) wireSummary {
	var s wireSummary
	for _, d := range log {
		if d.fromClient {
			s.c2s = append(s.c2s, d)
			s.c2sBytes += d.size
		} else {
			s.s2c = append(s.s2c, d)
			s.s2cBytes += d.size
		}
	}
	return s
}

func hasRecord(d wireDatagram, name string) bool {
	for _, r := range d.records {
		if r == name {
			return true
		}
	}
	return false
}

// TestResumptionWire: our client and our Listener through a relay that
// records the datagrams. A resumed handshake is ClientHello, then
// ServerHello+ChangeCipherSpec+Finished, then ChangeCipherSpec+Finished:
// 2 datagrams out and 1 in for the client, no cookie exchange, fewer bytes
// than the full handshake, and the Conn's counters match the wire.
func TestResumptionWire(t *testing.T) {
	p := testpki.New(t)
	modes := []struct {
		name                  string
		store                 bool
		serverTicketsDisabled bool
		clientTicketsDisabled bool
		want                  negotiation.Type
	}{
		{"ticket", false, false, false, negotiation.SessionTicket},
		{"session-id/client-no-tickets", true, false, true, negotiation.SessionID},
		{"session-id/server-no-tickets", true, true, false, negotiation.SessionID},
	}
	for _, sc := range resumeSuites {
		for _, m := range modes {
			t.Run(sc.ours.String()+"/"+m.name, func(t *testing.T) {
				scfg := ourServerConfig(p, sc)
				scfg.SessionTicketsDisabled = m.serverTicketsDisabled
				if m.store {
					scfg.SessionStore = newMemoryStore()
				}
				l, states := ourResumeServer(t, scfg)
				proxy := newWireProxy(t, l.Addr().(*net.UDPAddr))
				ccfg := ourResumeClientConfig(p, sc)
				ccfg.SessionTicketsDisabled = m.clientTicketsDisabled

				handshake := func(which string, resumed bool) (client, server dtls.ConnectionState, w wireSummary) {
					c := dialOurs(t, which, proxy.Addr(), ccfg)
					srv := nextState(t, states, which)
					// Both ends are done: every handshake datagram has
					// passed the relay.
					w = summarize(proxy.relayed(c.LocalAddr().(*net.UDPAddr).Port))
					st := c.ConnectionState()
					checkResumption(t, "our client, "+which, st, resumed, m.want)
					checkResumption(t, "our server, "+which, srv, resumed, m.want)
					roundTrip(t, c, which)
					if err := c.Close(); err != nil {
						t.Fatal(err)
					}
					for _, d := range append(append([]wireDatagram{}, w.c2s...), w.s2c...) {
						t.Logf("%s: %v", which, d)
					}
					if st.HandshakeDatagramsSent != len(w.c2s) || st.HandshakeDatagramsReceived != len(w.s2c) ||
						st.HandshakeBytesSent != w.c2sBytes || st.HandshakeBytesReceived != w.s2cBytes {
						t.Errorf("%s: client counts %d datagrams/%d bytes out, %d/%d in; the wire had %d/%d out, %d/%d in",
							which, st.HandshakeDatagramsSent, st.HandshakeBytesSent, st.HandshakeDatagramsReceived, st.HandshakeBytesReceived,
							len(w.c2s), w.c2sBytes, len(w.s2c), w.s2cBytes)
					}
					return st, srv, w
				}

				fullClient, fullServer, full := handshake("full handshake", false)
				st, resServer, res := handshake("resumed handshake", true)
				if m.want == negotiation.SessionID {
					id := fullServer.SessionID
					if len(id) == 0 || !bytes.Equal(fullClient.SessionID, id) || !bytes.Equal(resServer.SessionID, id) || !bytes.Equal(st.SessionID, id) {
						t.Errorf("session IDs: full handshake client %x server %x; resumed client %x server %x",
							fullClient.SessionID, id, st.SessionID, resServer.SessionID)
					}
				}
				if len(res.c2s) != 2 || len(res.s2c) != 1 {
					t.Fatalf("resumed handshake: %d datagrams out, %d in; want 2 and 1", len(res.c2s), len(res.s2c))
				}
				if st.HandshakeDatagramsSent != 2 || st.HandshakeDatagramsReceived != 1 {
					t.Errorf("resumed handshake: HandshakeDatagramsSent=%d HandshakeDatagramsReceived=%d, want 2 and 1",
						st.HandshakeDatagramsSent, st.HandshakeDatagramsReceived)
				}
				if !hasRecord(res.c2s[0], "ClientHello") {
					t.Errorf("resumed handshake: first datagram %v is no ClientHello", res.c2s[0])
				}
				sh := res.s2c[0]
				if hasRecord(sh, "HelloVerifyRequest") || !hasRecord(sh, "ServerHello") || !hasRecord(sh, "ChangeCipherSpec") || !hasRecord(sh, "Encrypted(22)") {
					t.Errorf("resumed handshake: server's datagram %v, want ServerHello, ChangeCipherSpec, Finished", sh)
				}
				if hasRecord(sh, "Certificate") || hasRecord(sh, "ServerKeyExchange") || hasRecord(sh, "ServerHelloDone") {
					t.Errorf("resumed handshake: server's datagram %v carries full-handshake messages", sh)
				}
				if fin := res.c2s[1]; !hasRecord(fin, "ChangeCipherSpec") || !hasRecord(fin, "Encrypted(22)") || hasRecord(fin, "ClientKeyExchange") {
					t.Errorf("resumed handshake: client's second datagram %v, want ChangeCipherSpec, Finished", fin)
				}
				fullBytes, resBytes := full.c2sBytes+full.s2cBytes, res.c2sBytes+res.s2cBytes
				t.Logf("full handshake %d datagrams / %d bytes; resumed %d datagrams / %d bytes",
					len(full.c2s)+len(full.s2c), fullBytes, len(res.c2s)+len(res.s2c), resBytes)
				if resBytes >= fullBytes {
					t.Errorf("resumed handshake %d bytes, full %d: not fewer", resBytes, fullBytes)
				}
			})
		}
	}
}
