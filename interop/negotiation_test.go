package interop

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/internal/dtlstest"
	"github.com/dtlsresume/dtlsresume/internal/peers"
	"github.com/dtlsresume/dtlsresume/internal/testpki"
	"github.com/dtlsresume/dtlsresume/negotiation"
	piondtls "github.com/pion/dtls/v3"
)

// Legacy interop with negotiation on: our client offering the
// session_resumption_type extension still resumes by RFC 5077 ticket and
// RFC 5246 session ID against servers that do not know it (they ignore the
// extension and never answer it, so Negotiated stays false), and our
// server with a Resumption policy still resumes legacy clients
// (docs/decisions.md 21–22). Where our client talks, a relay records the
// datagrams so that the test also sees the extension on the wire.

// negOffer is what our client offers in these tests.
var negOffer = []negotiation.Type{negotiation.ClientState, negotiation.SessionTicket, negotiation.SessionID}

// negClientStateKey is the client_state key of certificate clients, which
// have no PSK to derive one from.
var negClientStateKey = []byte("interop cs key!!")

// ---------------------------------------------------------------------------
// A relay that keeps the datagrams, and just enough decoding for hellos.

type negDatagram struct {
	client     int
	fromClient bool
	data       []byte
}

type negRelay struct {
	pc     *net.UDPConn
	target *net.UDPAddr

	mu   sync.Mutex
	up   map[int]*net.UDPConn
	log  []negDatagram
	wg   sync.WaitGroup
	done chan struct{}
}

func newNegRelay(t *testing.T, target *net.UDPAddr) *negRelay {
	t.Helper()
	pc, err := net.ListenUDP("udp", loopback())
	if err != nil {
		t.Fatal(err)
	}
	r := &negRelay{pc: pc, target: target, up: map[int]*net.UDPConn{}, done: make(chan struct{})}
	r.wg.Add(1)
	go r.fromClients()
	t.Cleanup(r.close)
	return r
}

func (r *negRelay) Addr() *net.UDPAddr { return r.pc.LocalAddr().(*net.UDPAddr) }

func (r *negRelay) datagrams(clientPort int) []negDatagram {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []negDatagram
	for _, d := range r.log {
		if d.client == clientPort {
			out = append(out, d)
		}
	}
	return out
}

func (r *negRelay) fromClients() {
	defer r.wg.Done()
	buf := make([]byte, 64*1024)
	for {
		n, caddr, err := r.pc.ReadFromUDP(buf)
		if err != nil {
			return
		}
		r.mu.Lock()
		up := r.up[caddr.Port]
		if up == nil {
			if up, err = net.DialUDP("udp", nil, r.target); err != nil {
				r.mu.Unlock()
				continue
			}
			r.up[caddr.Port] = up
			r.wg.Add(1)
			go r.fromServer(up, caddr)
		}
		r.log = append(r.log, negDatagram{caddr.Port, true, append([]byte(nil), buf[:n]...)})
		r.mu.Unlock()
		_, _ = up.Write(buf[:n])
	}
}

func (r *negRelay) fromServer(up *net.UDPConn, caddr *net.UDPAddr) {
	defer r.wg.Done()
	buf := make([]byte, 64*1024)
	for {
		n, err := up.Read(buf)
		if err != nil {
			select {
			case <-r.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		r.mu.Lock()
		r.log = append(r.log, negDatagram{caddr.Port, false, append([]byte(nil), buf[:n]...)})
		r.mu.Unlock()
		_, _ = r.pc.WriteToUDP(buf[:n], caddr)
	}
}

func (r *negRelay) close() {
	close(r.done)
	r.pc.Close()
	r.mu.Lock()
	for _, up := range r.up {
		up.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// negHello is a ClientHello or ServerHello seen on the wire.
type negHello struct {
	sessionID []byte
	cookie    []byte
	exts      map[uint16][]byte
}

// negHellos decodes the complete, distinct epoch-0 hellos of one side.
func negHellos(t *testing.T, ds []negDatagram, fromClient bool) []negHello {
	t.Helper()
	want := byte(2) // server_hello
	if fromClient {
		want = 1 // client_hello
	}
	seen := map[string]bool{}
	var out []negHello
	for _, d := range ds {
		if d.fromClient != fromClient {
			continue
		}
		b := d.data
		for len(b) >= 13 {
			typ, epoch, n := b[0], binary.BigEndian.Uint16(b[3:5]), int(binary.BigEndian.Uint16(b[11:13]))
			if 13+n > len(b) {
				break
			}
			body := b[13 : 13+n]
			b = b[13+n:]
			if typ != 22 || epoch != 0 {
				continue
			}
			for len(body) >= 12 {
				msgType := body[0]
				length := int(body[1])<<16 | int(body[2])<<8 | int(body[3])
				offset := int(body[6])<<16 | int(body[7])<<8 | int(body[8])
				fragLen := int(body[9])<<16 | int(body[10])<<8 | int(body[11])
				if 12+fragLen > len(body) {
					break
				}
				msg := body[12 : 12+fragLen]
				body = body[12+fragLen:]
				if msgType != want || offset != 0 || fragLen != length || seen[string(msg)] {
					continue
				}
				seen[string(msg)] = true
				h, err := parseNegHello(msg, fromClient)
				if err != nil {
					t.Fatalf("hello on the wire: %v", err)
				}
				out = append(out, h)
			}
		}
	}
	return out
}

func parseNegHello(m []byte, client bool) (negHello, error) {
	var h negHello
	bad := errors.New("truncated hello")
	if len(m) < 35 {
		return h, bad
	}
	m = m[34:] // version, random
	take := func(n int) ([]byte, error) {
		if len(m) < n {
			return nil, bad
		}
		v := m[:n]
		m = m[n:]
		return v, nil
	}
	vec8 := func() ([]byte, error) {
		l, err := take(1)
		if err != nil {
			return nil, err
		}
		return take(int(l[0]))
	}
	vec16 := func() ([]byte, error) {
		l, err := take(2)
		if err != nil {
			return nil, err
		}
		return take(int(binary.BigEndian.Uint16(l)))
	}
	var err error
	if h.sessionID, err = vec8(); err != nil {
		return h, err
	}
	if client {
		if h.cookie, err = vec8(); err != nil {
			return h, err
		}
		if _, err = vec16(); err != nil { // cipher_suites
			return h, err
		}
		if _, err = vec8(); err != nil { // compression_methods
			return h, err
		}
	} else if _, err = take(3); err != nil { // cipher_suite, compression_method
		return h, err
	}
	h.exts = map[uint16][]byte{}
	if len(m) == 0 {
		return h, nil
	}
	exts, err := vec16()
	if err != nil {
		return h, err
	}
	for len(exts) >= 4 {
		typ, n := binary.BigEndian.Uint16(exts), int(binary.BigEndian.Uint16(exts[2:]))
		if 4+n > len(exts) {
			return h, bad
		}
		h.exts[typ] = exts[4 : 4+n]
		exts = exts[4+n:]
	}
	return h, nil
}

// checkNegWire checks one dial of our client against a legacy server: every
// ClientHello offers negOffer, the server never answers it, and the
// ClientHello that mattered (the last) asks for the client_state ticket
// exactly when askBack. It returns that ClientHello and the ServerHello.
func checkNegWire(t *testing.T, which string, ds []negDatagram, askBack bool) (ch, sh negHello) {
	t.Helper()
	chs, shs := negHellos(t, ds, true), negHellos(t, ds, false)
	if len(chs) == 0 || len(shs) != 1 {
		t.Fatalf("%s: %d ClientHellos, %d ServerHellos on the wire", which, len(chs), len(shs))
	}
	for _, h := range chs {
		v, ok := h.exts[negotiation.DefaultCodepoint]
		if !ok {
			t.Errorf("%s: a ClientHello without session_resumption_type", which)
			continue
		}
		o, err := negotiation.ParseClientOffer(v)
		if err != nil {
			t.Fatalf("%s: ClientResumptionTypes: %v", which, err)
		}
		if !slices.Equal(o.Offered, negOffer) || len(o.Handle) != negotiation.HandleSize || o.Resume != askBack {
			t.Errorf("%s: offer %v handle %d bytes resume=%v, want %v, 16 bytes, resume=%v",
				which, o.Offered, len(o.Handle), o.Resume, negOffer, askBack)
		}
	}
	if _, ok := shs[0].exts[negotiation.DefaultCodepoint]; ok {
		t.Errorf("%s: the legacy server answered session_resumption_type", which)
	}
	return chs[len(chs)-1], shs[0]
}

// negDialOurs is dialOurs on a socket that stays bound until the test
// ends, so that the second dial cannot get the first one's port: the relay
// tells conversations apart by the client's port.
func negDialOurs(t *testing.T, which string, addr *net.UDPAddr, cfg *dtls.Config) *dtls.Conn {
	t.Helper()
	pc, err := net.ListenUDP("udp", loopback())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	c, err := dtls.Client(pc, addr, cfg)
	if err != nil {
		t.Fatalf("%s: %v", which, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), resumeTimeout)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		t.Fatalf("%s: our client's handshake: %v", which, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func checkNegotiated(t *testing.T, which string, st dtls.ConnectionState) {
	t.Helper()
	if st.Negotiated {
		t.Errorf("%s: Negotiated with a legacy peer", which)
	}
}

// ---------------------------------------------------------------------------
// Our client, negotiation on, against legacy servers

// TestNegotiationOurClientOpenSSLServer: our client offering
// [client_state, session_ticket, session_id] resumes with openssl s_server
// by ticket (default) and by session ID (-no_ticket).
func TestNegotiationOurClientOpenSSLServer(t *testing.T) {
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
				relay := newNegRelay(t, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
				cfg := ourResumeClientConfig(p, sc)
				cfg.Resumption = negOffer
				if !sc.psk {
					cfg.ClientStateKey = negClientStateKey
				}

				c1 := negDialOurs(t, "full handshake", relay.Addr(), cfg)
				st1 := c1.ConnectionState()
				checkResumption(t, "our client, full handshake", st1, false, m.want)
				checkNegotiated(t, "full handshake", st1)
				sServerRoundTrip(t, srv, c1, 1)
				_, sh1 := checkNegWire(t, "full handshake", relay.datagrams(c1.LocalAddr().(*net.UDPAddr).Port), true)
				if err := c1.Close(); err != nil {
					t.Fatal(err)
				}

				c2 := negDialOurs(t, "second handshake", relay.Addr(), cfg)
				st2 := c2.ConnectionState()
				checkResumption(t, "our client, second handshake", st2, true, m.want)
				checkNegotiated(t, "second handshake", st2)
				sServerRoundTrip(t, srv, c2, 2)
				if err := srv.WaitFor("Reused session-id", 5*time.Second); err != nil {
					t.Fatal(err)
				}
				// Holding a session, the client offers it the RFC way and
				// does not ask for a client_state ticket.
				ch2, sh2 := checkNegWire(t, "second handshake", relay.datagrams(c2.LocalAddr().(*net.UDPAddr).Port), false)
				switch m.want {
				case negotiation.SessionTicket:
					if len(ch2.exts[35]) == 0 {
						t.Errorf("second ClientHello carries no ticket")
					}
				case negotiation.SessionID:
					if len(sh1.sessionID) == 0 || !bytes.Equal(ch2.sessionID, sh1.sessionID) {
						t.Errorf("second ClientHello session_id %x, want the server's %x", ch2.sessionID, sh1.sessionID)
					}
				}
				if !bytes.Equal(sh2.sessionID, ch2.sessionID) {
					t.Errorf("s_server did not echo the session_id: resumption not accepted on the wire")
				}
			})
		}
	}
}

// TestNegotiationOurClientPionServer: the same client against pion/dtls
// v3's listener, which has session IDs only.
func TestNegotiationOurClientPionServer(t *testing.T) {
	cert, pool := serverCert(t)
	for _, sc := range suiteCases[:2] {
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
			relay := newNegRelay(t, l.Addr().(*net.UDPAddr))
			cfg := ourPionClientConfig(sc, pool)
			cfg.Resumption = negOffer
			if !sc.psk {
				cfg.ClientStateKey = negClientStateKey
			}
			c1 := negDialOurs(t, "full handshake", relay.Addr(), cfg)
			st1 := c1.ConnectionState()
			checkResumption(t, "our client, full handshake", st1, false, negotiation.SessionID)
			checkNegotiated(t, "full handshake", st1)
			roundTrip(t, c1, "negotiating client to pion, 1")
			checkNegWire(t, "full handshake", relay.datagrams(c1.LocalAddr().(*net.UDPAddr).Port), true)
			if err := c1.Close(); err != nil {
				t.Fatal(err)
			}
			c2 := negDialOurs(t, "second handshake", relay.Addr(), cfg)
			st2 := c2.ConnectionState()
			checkResumption(t, "our client, second handshake", st2, true, negotiation.SessionID)
			checkNegotiated(t, "second handshake", st2)
			if len(st1.SessionID) == 0 || !bytes.Equal(st1.SessionID, st2.SessionID) {
				t.Errorf("session IDs: full %x, resumed %x", st1.SessionID, st2.SessionID)
			}
			roundTrip(t, c2, "negotiating client to pion, 2")
			ch2, sh2 := checkNegWire(t, "second handshake", relay.datagrams(c2.LocalAddr().(*net.UDPAddr).Port), false)
			if !bytes.Equal(ch2.sessionID, st1.SessionID) || !bytes.Equal(sh2.sessionID, st1.SessionID) {
				t.Errorf("wire: ClientHello session_id %x, ServerHello %x, want %x", ch2.sessionID, sh2.sessionID, st1.SessionID)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Legacy clients against our server with a Resumption policy

// TestNegotiationOpenSSLClientOurServer: openssl s_client (-sess_out, then
// -sess_in) against our Listener with a Resumption policy. The policy
// applies to legacy clients too: a ticket only if allowed, else a session
// ID if allowed, else nothing.
func TestNegotiationOpenSSLClientOurServer(t *testing.T) {
	openssl := peers.Require(t, "openssl")
	p := testpki.New(t)
	all := []negotiation.Type{negotiation.ClientState, negotiation.SessionTicket, negotiation.SessionID}
	rows := []struct {
		name     string
		policy   []negotiation.Type
		noTicket bool
		bothKind bool // run with the certificate suite too
		want     negotiation.Type
	}{
		{"policy=all/ticket", all, false, true, negotiation.SessionTicket},
		{"policy=all/no_ticket", all, true, true, negotiation.SessionID},
		{"policy=session_id,client_state/ticket-asking client", []negotiation.Type{negotiation.SessionID, negotiation.ClientState}, false, false, negotiation.SessionID},
		{"policy=client_state/no resumption", []negotiation.Type{negotiation.ClientState}, false, false, negotiation.None},
	}
	for _, sc := range resumeSuites {
		for _, r := range rows {
			if !sc.psk && !r.bothKind {
				continue
			}
			t.Run(sc.ours.String()+"/"+r.name, func(t *testing.T) {
				cfg := ourServerConfig(p, sc)
				cfg.SessionStore = newMemoryStore()
				cfg.Resumption = r.policy
				l, states := ourResumeServer(t, cfg)
				sess := filepath.Join(t.TempDir(), "session.pem")
				cipher := opensslName(sc.ours)
				args := sClientArgs(l.Addr().String(), sc, p)
				if r.noTicket {
					args = append(args, "-no_ticket")
				}
				runSClient(t, openssl, append(args, "-sess_out", sess), "New, TLSv1.2, Cipher is "+cipher, "first from openssl")
				first := nextState(t, states, "full handshake")
				checkResumption(t, "our server, full handshake", first, false, r.want)
				checkNegotiated(t, "our server, full handshake", first)
				if r.want == negotiation.None {
					if _, err := os.Stat(sess); !errors.Is(err, os.ErrNotExist) {
						t.Fatalf("s_client saved a session (%v) that our server's policy did not make resumable", err)
					}
					return
				}
				cl := runSClient(t, openssl, append(args, "-sess_in", sess), "Reused, TLSv1.2, Cipher is "+cipher, "second from openssl")
				second := nextState(t, states, "second handshake")
				checkResumption(t, "our server, second handshake", second, true, r.want)
				checkNegotiated(t, "our server, second handshake", second)
				if r.want == negotiation.SessionID && !strings.Contains(cl.Output(), "Session-ID: "+strings.ToUpper(hex.EncodeToString(first.SessionID))) {
					t.Errorf("s_client does not show the session ID %X our server issued", first.SessionID)
				}
			})
		}
	}
}

// TestNegotiationPionClientOurServer: pion/dtls v3's client (session IDs
// only) against our Listener with a Resumption policy.
func TestNegotiationPionClientOurServer(t *testing.T) {
	cert, pool := serverCert(t)
	rows := []struct {
		name   string
		policy []negotiation.Type
		want   negotiation.Type
	}{
		{"policy=all", []negotiation.Type{negotiation.ClientState, negotiation.SessionTicket, negotiation.SessionID}, negotiation.SessionID},
		{"policy=client_state,session_ticket", []negotiation.Type{negotiation.ClientState, negotiation.SessionTicket}, negotiation.None},
	}
	for _, sc := range suiteCases[:2] {
		for _, r := range rows {
			t.Run(sc.ours.String()+"/"+r.name, func(t *testing.T) {
				cfg := ourSessionIDServerConfig(cert, sc)
				cfg.Resumption = r.policy
				l, states := ourResumeServer(t, cfg)
				ps, dial := pionSessionClient(t, sc, pool, l.Addr().(*net.UDPAddr))
				s1 := dial("full handshake", "pion to a policy server, 1")
				first := nextState(t, states, "full handshake")
				checkResumption(t, "our server, full handshake", first, false, r.want)
				checkNegotiated(t, "our server, full handshake", first)
				if r.want == negotiation.None {
					if ps.len() != 0 || len(s1.SessionID) != 0 {
						t.Fatalf("pion stored %d sessions (session ID %x) though the policy allows none it can use", ps.len(), s1.SessionID)
					}
					dial("second handshake", "pion to a policy server, 2")
					second := nextState(t, states, "second handshake")
					checkResumption(t, "our server, second handshake", second, false, r.want)
					return
				}
				s2 := dial("second handshake", "pion to a policy server, 2")
				second := nextState(t, states, "second handshake")
				if !bytes.Equal(s1.SessionID, s2.SessionID) {
					t.Errorf("pion's session IDs: %x then %x", s1.SessionID, s2.SessionID)
				}
				checkOurResumedServerSide(t, sc, first, second)
				checkNegotiated(t, "our server, second handshake", second)
			})
		}
	}
}
