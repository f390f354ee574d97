package dtls

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/internal/lossyproxy"
	"github.com/dtlsresume/dtlsresume/negotiation"
	"github.com/dtlsresume/dtlsresume/ticketfmt"
)

// This file proves the session_resumption_type negotiation (spec §3,
// docs/decisions.md 21-22) and client_state resumption (docs/decisions.md 23-28) on real
// UDP sockets, checking every handshake on the wire through a relay that
// decodes the datagrams it forwards. Helpers are prefixed nm.

// ---------------------------------------------------------------------------
// Wire relay

// nmDatagram is one datagram the relay forwarded.
type nmDatagram struct {
	client     int // the client's UDP port
	fromClient bool
	data       []byte
}

// nmRelay forwards datagrams between clients and one server, one upstream
// socket per client, and records every datagram.
type nmRelay struct {
	pc     *net.UDPConn
	target *net.UDPAddr

	mu   sync.Mutex
	up   map[int]*net.UDPConn // by client port (all clients are on 127.0.0.1)
	log  []nmDatagram
	wg   sync.WaitGroup
	done chan struct{}
}

func nmNewRelay(t testing.TB, target net.Addr) *nmRelay {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &nmRelay{pc: pc, target: target.(*net.UDPAddr), up: map[int]*net.UDPConn{}, done: make(chan struct{})}
	r.wg.Add(1)
	go r.fromClients()
	t.Cleanup(r.close)
	return r
}

func (r *nmRelay) Addr() *net.UDPAddr { return r.pc.LocalAddr().(*net.UDPAddr) }

// upstream is the address the server sees for the client on clientPort.
func (r *nmRelay) upstream(clientPort int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if up := r.up[clientPort]; up != nil {
		return up.LocalAddr().String()
	}
	return ""
}

// inject sends d to the server from the upstream socket of clientPort, as
// if the client had sent it.
func (r *nmRelay) inject(clientPort int, d []byte) error {
	r.mu.Lock()
	up := r.up[clientPort]
	r.mu.Unlock()
	if up == nil {
		return fmt.Errorf("no upstream for client port %d", clientPort)
	}
	_, err := up.Write(d)
	return err
}

// begin starts a new conversation for clientPort, whose port an earlier
// client of the relay may have had: it forgets that client's upstream
// socket, so that the server sees a new address, and returns the log
// position from which the new conversation is recorded.
func (r *nmRelay) begin(clientPort int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if up := r.up[clientPort]; up != nil {
		up.Close()
		delete(r.up, clientPort)
	}
	return len(r.log)
}

// datagrams returns what the relay forwarded to and from clientPort.
func (r *nmRelay) datagrams(clientPort int) []nmDatagram { return r.datagramsSince(clientPort, 0) }

// datagramsSince is datagrams from log position since on.
func (r *nmRelay) datagramsSince(clientPort, since int) []nmDatagram {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []nmDatagram
	for _, d := range r.log[since:] {
		if d.client == clientPort {
			out = append(out, d)
		}
	}
	return out
}

func (r *nmRelay) fromClients() {
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
			up, err = net.DialUDP("udp", nil, r.target)
			if err != nil {
				r.mu.Unlock()
				continue
			}
			r.up[caddr.Port] = up
			r.wg.Add(1)
			go r.fromServer(up, caddr)
		}
		r.log = append(r.log, nmDatagram{client: caddr.Port, fromClient: true, data: append([]byte(nil), buf[:n]...)})
		r.mu.Unlock()
		_, _ = up.Write(buf[:n])
	}
}

func (r *nmRelay) fromServer(up *net.UDPConn, caddr *net.UDPAddr) {
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
		r.log = append(r.log, nmDatagram{client: caddr.Port, fromClient: false, data: append([]byte(nil), buf[:n]...)})
		r.mu.Unlock()
		_, _ = r.pc.WriteToUDP(buf[:n], caddr)
	}
}

func (r *nmRelay) close() {
	close(r.done)
	r.pc.Close()
	r.mu.Lock()
	for _, up := range r.up {
		up.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// ---------------------------------------------------------------------------
// Decoding what the relay saw

// nmEvent is one record (or, for handshake records, one handshake
// fragment) in the order it crossed the relay.
type nmEvent struct {
	fromClient bool
	datagram   int // index of the datagram in the conversation
	epoch      uint16
	content    uint8
	hsType     uint8  // handshake records of epoch 0
	hsSeq      uint16 // handshake records of epoch 0
	body       []byte // a complete epoch-0 handshake message, else nil
	alert      []byte // an epoch-0 alert's two bytes
}

func (e nmEvent) String() string {
	dir := "S->C"
	if e.fromClient {
		dir = "C->S"
	}
	switch {
	case e.epoch != 0:
		return fmt.Sprintf("%s #%d Encrypted(%d)", dir, e.datagram, e.content)
	case e.content == recordHandshake:
		return fmt.Sprintf("%s #%d %s(seq %d)", dir, e.datagram, nmTypeName(e.hsType), e.hsSeq)
	case e.content == recordChangeCipherSpec:
		return fmt.Sprintf("%s #%d ChangeCipherSpec", dir, e.datagram)
	case e.content == recordAlert:
		return fmt.Sprintf("%s #%d Alert%v", dir, e.datagram, e.alert)
	}
	return fmt.Sprintf("%s #%d Record(%d)", dir, e.datagram, e.content)
}

func nmTypeName(t uint8) string {
	names := map[uint8]string{
		typeClientHello: "ClientHello", typeServerHello: "ServerHello", typeHelloVerifyRequest: "HelloVerifyRequest",
		typeNewSessionTicket: "NewSessionTicket", typeCertificate: "Certificate", typeServerKeyExchange: "ServerKeyExchange",
		typeCertificateRequest: "CertificateRequest", typeServerHelloDone: "ServerHelloDone",
		typeCertificateVerify: "CertificateVerify", typeClientKeyExchange: "ClientKeyExchange", typeFinished: "Finished",
	}
	if n, ok := names[t]; ok {
		return n
	}
	return fmt.Sprintf("Handshake(%d)", t)
}

// nmWire is a decoded conversation between one client and the server.
type nmWire struct {
	events []nmEvent
}

func nmDecode(ds []nmDatagram) nmWire {
	var w nmWire
	for i, d := range ds {
		recs, _ := parseRecords(d.data)
		for _, r := range recs {
			e := nmEvent{fromClient: d.fromClient, datagram: i, epoch: r.epoch, content: r.contentType}
			if r.epoch != 0 {
				w.events = append(w.events, e)
				continue
			}
			switch r.contentType {
			case recordHandshake:
				frags, _ := parseHandshakeFragments(r.fragment)
				for _, f := range frags {
					fe := e
					fe.hsType, fe.hsSeq = f.msgType, f.seq
					if f.offset == 0 && len(f.data) == int(f.length) {
						fe.body = append([]byte(nil), f.data...)
					}
					w.events = append(w.events, fe)
				}
			case recordAlert:
				e.alert = append([]byte(nil), r.fragment...)
				w.events = append(w.events, e)
			default:
				w.events = append(w.events, e)
			}
		}
	}
	return w
}

func (w nmWire) String() string {
	var b strings.Builder
	for _, e := range w.events {
		b.WriteString("\n\t")
		b.WriteString(e.String())
	}
	return b.String()
}

// messages returns the indexes into w.events of the distinct epoch-0
// handshake messages of type typ from one side (retransmissions dropped).
func (w nmWire) messages(fromClient bool, typ uint8) []int {
	seen := map[string]bool{}
	var out []int
	for i, e := range w.events {
		if e.fromClient != fromClient || e.epoch != 0 || e.content != recordHandshake || e.hsType != typ {
			continue
		}
		k := fmt.Sprintf("%d/%x", e.hsSeq, e.body)
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, i)
	}
	return out
}

func (w nmWire) has(fromClient bool, typ uint8) bool { return len(w.messages(fromClient, typ)) > 0 }

// first returns the index of the first event from one side at or after
// start that matches, or -1.
func (w nmWire) first(start int, fromClient bool, match func(nmEvent) bool) int {
	for i := max(start, 0); i < len(w.events); i++ {
		if w.events[i].fromClient == fromClient && match(w.events[i]) {
			return i
		}
	}
	return -1
}

func nmIsCCS(e nmEvent) bool { return e.epoch == 0 && e.content == recordChangeCipherSpec }

func (w nmWire) alerts(fromClient bool) [][]byte {
	var out [][]byte
	for _, e := range w.events {
		if e.fromClient == fromClient && e.epoch == 0 && e.content == recordAlert {
			out = append(out, e.alert)
		}
	}
	return out
}

// nmHello is a decoded ClientHello or ServerHello with its extensions.
type nmHello struct {
	index     int // into nmWire.events
	sessionID []byte
	ticketExt bool   // SessionTicket (35) present
	ticket    []byte // its data
	resExt    bool   // session_resumption_type present
	offer     *negotiation.ClientOffer
	answer    *negotiation.ServerAnswer
	cookie    []byte
	random    [32]byte
}

func (w nmWire) clientHellos(t testing.TB) []nmHello {
	t.Helper()
	var out []nmHello
	for _, i := range w.messages(true, typeClientHello) {
		var m clientHelloMsg
		if err := m.unmarshal(w.events[i].body); err != nil {
			t.Fatalf("ClientHello on the wire does not parse: %v", err)
		}
		h := nmHello{index: i, sessionID: m.sessionID, cookie: m.cookie, random: m.random}
		h.ticket, h.ticketExt = findExtension(m.extensions, extSessionTicket)
		var v []byte
		if v, h.resExt = findExtension(m.extensions, negotiation.DefaultCodepoint); h.resExt {
			o, err := negotiation.ParseClientOffer(v)
			if err != nil {
				t.Fatalf("ClientHello session_resumption_type does not parse: %v", err)
			}
			h.offer = o
		}
		out = append(out, h)
	}
	return out
}

func (w nmWire) serverHellos(t testing.TB) []nmHello {
	t.Helper()
	var out []nmHello
	for _, i := range w.messages(false, typeServerHello) {
		var m serverHelloMsg
		if err := m.unmarshal(w.events[i].body); err != nil {
			t.Fatalf("ServerHello on the wire does not parse: %v", err)
		}
		h := nmHello{index: i, sessionID: m.sessionID, random: m.random}
		h.ticket, h.ticketExt = findExtension(m.extensions, extSessionTicket)
		var v []byte
		if v, h.resExt = findExtension(m.extensions, negotiation.DefaultCodepoint); h.resExt {
			a, err := negotiation.ParseServerAnswer(v)
			if err != nil {
				t.Fatalf("ServerHello session_resumption_type does not parse: %v", err)
			}
			h.answer = a
		}
		out = append(out, h)
	}
	return out
}

// tickets returns the NewSessionTicket messages one side sent, with their
// indexes.
func (w nmWire) tickets(t testing.TB, fromClient bool) ([]*newSessionTicketMsg, []int) {
	t.Helper()
	idx := w.messages(fromClient, typeNewSessionTicket)
	var out []*newSessionTicketMsg
	for _, i := range idx {
		m := &newSessionTicketMsg{}
		if err := m.unmarshal(w.events[i].body); err != nil {
			t.Fatalf("NewSessionTicket on the wire does not parse: %v", err)
		}
		out = append(out, m)
	}
	return out, idx
}

// nmHandshakeTypes lists the epoch-0 handshake message types in a datagram
// (for lossyproxy filters).
func nmHandshakeTypes(d []byte) []uint8 {
	var out []uint8
	recs, _ := parseRecords(d)
	for _, r := range recs {
		if r.epoch != 0 || r.contentType != recordHandshake {
			continue
		}
		frags, _ := parseHandshakeFragments(r.fragment)
		for _, f := range frags {
			out = append(out, f.msgType)
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// Servers, clients and dials

// nmServer is an echo Listener that records the state of every accepted
// connection under the peer address it saw.
type nmServer struct {
	l     *Listener
	store *mapStore

	mu     sync.Mutex
	states map[string]ConnectionState
}

func nmStartServer(t testing.TB, cfg *Config) *nmServer {
	t.Helper()
	l, err := Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	s := &nmServer{l: l, states: map[string]ConnectionState{}}
	if ms, ok := cfg.SessionStore.(*mapStore); ok {
		s.store = ms
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			dc := c.(*Conn)
			s.mu.Lock()
			s.states[c.RemoteAddr().String()] = dc.ConnectionState()
			s.mu.Unlock()
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
	return s
}

func (s *nmServer) Addr() net.Addr { return s.l.Addr() }

func (s *nmServer) state(t testing.TB, raddr string) ConnectionState {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		st, ok := s.states[raddr]
		s.mu.Unlock()
		if ok {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server accepted no connection from %s", raddr)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// nmPSK is the pre-shared key of a PSK identity in these tests.
func nmPSK(identity string) []byte {
	h := sha256.Sum256([]byte("nm psk/" + identity))
	return h[:16]
}

// nmPSKServer is a PSK server that knows every identity (nmPSK), keeps
// sessions in a mapStore and has tickets on; only policy restricts it.
func nmPSKServer(policy []negotiation.Type) *Config {
	return &Config{
		PSK: func(id []byte) ([]byte, error) {
			if len(id) == 0 {
				return nil, errUnknownIdentity
			}
			return nmPSK(string(id)), nil
		},
		CipherSuites: []CipherSuiteID{TLS_PSK_WITH_AES_128_CCM_8, TLS_PSK_WITH_AES_128_GCM_SHA256},
		SessionStore: newMapStore(),
		Resumption:   policy,
	}
}

func nmPSKClient(identity string, offer []negotiation.Type) *Config {
	key := nmPSK(identity)
	return &Config{
		PSK:             func([]byte) ([]byte, error) { return key, nil },
		PSKIdentityHint: []byte(identity),
		CipherSuites:    []CipherSuiteID{TLS_PSK_WITH_AES_128_CCM_8},
		Resumption:      offer,
	}
}

// nmHandleOf is the client_state handle a client Config sends.
func nmHandleOf(t testing.TB, cfg *Config) []byte {
	t.Helper()
	h, err := cfg.clientStateHandle(cfg.sessionBinding(nil))
	if err != nil {
		t.Fatal(err)
	}
	return h[:]
}

// nmDial is DialContext on a socket that stays bound until the test ends,
// so that no later dial of the test reuses its port: relays and the
// listener tell clients apart by address.
func nmDial(ctx context.Context, t testing.TB, addr *net.UDPAddr, cfg *Config) (*Conn, error) {
	t.Helper()
	c, _, err := nmDialRelay(ctx, t, addr, cfg, nil)
	return c, err
}

// nmDialRelay is nmDial through relay (nil: addr is not a relay); it
// returns the relay's log position where the conversation starts.
func nmDialRelay(ctx context.Context, t testing.TB, addr *net.UDPAddr, cfg *Config, relay *nmRelay) (*Conn, int, error) {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	since := 0
	if relay != nil {
		since = relay.begin(pc.LocalAddr().(*net.UDPAddr).Port)
	}
	c, err := Client(pc, addr, cfg)
	if err != nil {
		return nil, since, err
	}
	if err := c.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, since, err
	}
	return c, since, nil
}

// nmDialResult is one dial through a relay: both ends' states and the wire.
type nmDialResult struct {
	client, server ConnectionState
	wire           nmWire
}

// nmDialVia dials srv through relay with cfg, exchanges one echo (after
// which every handshake datagram has crossed the relay) and closes.
func nmDialVia(t testing.TB, srv *nmServer, relay *nmRelay, cfg *Config) nmDialResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, since, err := nmDialRelay(ctx, t, relay.Addr(), cfg, relay)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	echoOnce(t, c, "negotiated")
	port := c.LocalAddr().(*net.UDPAddr).Port
	d := nmDialResult{client: c.ConnectionState(), server: srv.state(t, relay.upstream(port))}
	d.wire = nmDecode(relay.datagramsSince(port, since))
	return d
}

// nmStoreGet reads a key from a mapStore without counting.
func nmStoreGet(s *mapStore, key []byte) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[string(key)]
	return bytes.Clone(v), ok
}

func nmStorePut(s *mapStore, key, v []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[string(key)] = bytes.Clone(v)
}

// nmRecords counts the client_state records in a store.
func nmRecords(s *mapStore) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k := range s.m {
		if strings.HasPrefix(k, "csh/") {
			n++
		}
	}
	return n
}

func nmRecord(t testing.TB, s *mapStore, handle []byte) (*clientStateRecord, []byte) {
	t.Helper()
	v, ok := nmStoreGet(s, clientStateKeyName(handle))
	if !ok {
		t.Fatalf("no client_state record for handle %x", handle)
	}
	rec, err := parseClientStateRecord(v)
	if err != nil {
		t.Fatalf("client_state record: %v", err)
	}
	return rec, v
}

// ---------------------------------------------------------------------------
// 1. The matrix

type nmOffer struct {
	name      string
	types     []negotiation.Type // nil: a legacy client without the extension
	noTickets bool               // legacy client with SessionTicketsDisabled
}

const (
	nmNone   = negotiation.None
	nmID     = negotiation.SessionID
	nmTicket = negotiation.SessionTicket
	nmCS     = negotiation.ClientState
)

var nmOffers = []nmOffer{
	{name: "none", types: []negotiation.Type{nmNone}},
	{name: "session_id", types: []negotiation.Type{nmID}},
	{name: "session_ticket", types: []negotiation.Type{nmTicket}},
	{name: "client_state", types: []negotiation.Type{nmCS}},
	{name: "session_ticket,session_id", types: []negotiation.Type{nmTicket, nmID}},
	{name: "client_state,session_ticket", types: []negotiation.Type{nmCS, nmTicket}},
	{name: "session_id,client_state,session_ticket", types: []negotiation.Type{nmID, nmCS, nmTicket}},
	{name: "none,session_ticket", types: []negotiation.Type{nmNone, nmTicket}},
	{name: "legacy"},
	{name: "legacy-no-tickets", noTickets: true},
}

func (o nmOffer) legacy() bool { return o.types == nil }

func (o nmOffer) offers(t negotiation.Type) bool { return slices.Contains(o.types, t) }

// needsCache: the mechanisms that keep client state need a session cache.
func (o nmOffer) needsCache() bool { return o.legacy() || o.offers(nmID) || o.offers(nmTicket) }

// asksTickets: the client sends the SessionTicket extension.
func (o nmOffer) asksTickets() bool { return !o.noTickets && (o.legacy() || o.offers(nmTicket)) }

// nmPolicies are the 16 subsets of {none, session_id, session_ticket,
// client_state}.
func nmPolicies() [][]negotiation.Type {
	all := []negotiation.Type{nmNone, nmID, nmTicket, nmCS}
	var out [][]negotiation.Type
	for mask := 0; mask < 16; mask++ {
		p := []negotiation.Type{}
		for i, t := range all {
			if mask&(1<<i) != 0 {
				p = append(p, t)
			}
		}
		out = append(out, p)
	}
	return out
}

func nmPolicyName(p []negotiation.Type) string {
	if len(p) == 0 {
		return "{}"
	}
	return "{" + negotiation.FormatList(p) + "}"
}

// nmExpect is the rule: the first type in the client's order that the
// server allows, none when nothing fits; a legacy client gets a ticket if
// it asked for tickets, else a session ID if allowed.
func nmExpect(o nmOffer, policy []negotiation.Type) negotiation.Type {
	allows := negotiation.Policy(policy).Allows
	if o.legacy() {
		switch {
		case o.asksTickets() && allows(nmTicket):
			return nmTicket
		case allows(nmID):
			return nmID
		}
		return nmNone
	}
	for _, t := range o.types {
		if allows(t) {
			return t
		}
	}
	return nmNone
}

// nmKind is a credential kind of the matrix.
type nmKind struct {
	name   string
	offers []nmOffer
	server func(tc testCert, policy []negotiation.Type) *Config
	client func(tc testCert, o nmOffer) *Config
}

var nmKinds = []nmKind{
	{
		name:   "PSK",
		offers: nmOffers,
		server: func(_ testCert, p []negotiation.Type) *Config { return nmPSKServer(p) },
		client: func(_ testCert, o nmOffer) *Config { return nmPSKClient("id-"+o.name, o.types) },
	},
	nmECDHEKind("ECDHE", TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8),
	// A CBC suite (encrypt-then-MAC) over X25519.
	nmECDHEKind("ECDHE-CBC-X25519", TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, CurveX25519, CurveP256),
}

// nmECDHEKind is the certificate kind of the matrix on one suite, the
// client offering curves (nil: the default groups).
func nmECDHEKind(name string, suite CipherSuiteID, curves ...CurveID) nmKind {
	return nmKind{
		name:   name,
		offers: []nmOffer{nmOffers[1], nmOffers[2], nmOffers[3], nmOffers[6], nmOffers[8]},
		server: func(tc testCert, p []negotiation.Type) *Config {
			return &Config{Certificates: []tls.Certificate{tc.cert}, SessionStore: newMapStore(), Resumption: p}
		},
		client: func(tc testCert, o nmOffer) *Config {
			key := sha256.Sum256([]byte("nm client key/" + o.name))
			return &Config{
				RootCAs: tc.pool, ServerName: "localhost", CipherSuites: []CipherSuiteID{suite},
				CurvePreferences: curves, Resumption: o.types, ClientStateKey: key[:16],
			}
		},
	}
}

// TestNegotiationMatrix: every client offer × every server policy, a full
// handshake then a second dial, on real sockets through a recording relay.
// The negotiated type follows docs/decisions.md 21-22 on both ends and the
// second handshake resumes by exactly that mechanism, on the wire.
func TestNegotiationMatrix(t *testing.T) {
	tc := newTestCert(t)
	start := time.Now()
	t.Cleanup(func() { t.Logf("matrix took %v", time.Since(start).Round(time.Millisecond)) })
	for _, kind := range nmKinds {
		for _, policy := range nmPolicies() {
			t.Run(kind.name+"/policy="+nmPolicyName(policy), func(t *testing.T) {
				t.Parallel()
				srv := nmStartServer(t, kind.server(tc, policy))
				relay := nmNewRelay(t, srv.Addr())
				for _, o := range kind.offers {
					t.Run("offer="+o.name, func(t *testing.T) {
						t.Parallel()
						nmRunMatrixCase(t, kind, tc, srv, relay, o, policy)
					})
				}
			})
		}
	}
}

func nmRunMatrixCase(t *testing.T, kind nmKind, tc testCert, srv *nmServer, relay *nmRelay, o nmOffer, policy []negotiation.Type) {
	want := nmExpect(o, policy)
	var cache ClientSessionCache
	if o.needsCache() {
		cache = NewLRUClientSessionCache(4)
	}
	// A new Config for every dial, as a new process would make; only the
	// session cache (where the type needs one) carries over.
	newClient := func() *Config {
		c := kind.client(tc, o)
		c.ClientSessionCache = cache
		c.SessionTicketsDisabled = o.noTickets
		return c
	}
	var handle []byte
	if o.offers(nmCS) {
		handle = nmHandleOf(t, newClient())
	}

	full := nmDialVia(t, srv, relay, newClient())
	t.Logf("want %v; full handshake:%v", want, full.wire)
	nmCheckStates(t, "full handshake", full, false, want, !o.legacy())
	nmCheckFull(t, o, want, full, handle)
	if srv.store != nil && handle != nil {
		_, ok := nmStoreGet(srv.store, clientStateKeyName(handle))
		if ok != (want == nmCS) {
			t.Errorf("full handshake: server holds a client_state record: %v, want %v", ok, want == nmCS)
		}
	}
	if t.Failed() {
		return
	}

	res := nmDialVia(t, srv, relay, newClient())
	t.Logf("second handshake:%v", res.wire)
	nmCheckStates(t, "second handshake", res, want != nmNone, want, !o.legacy())
	if want == nmNone {
		nmCheckFull(t, o, want, res, handle)
	} else {
		nmCheckResumed(t, o, want, full, res, handle)
	}
}

func nmCheckStates(t *testing.T, which string, d nmDialResult, resumed bool, want negotiation.Type, negotiated bool, serverStores ...bool) {
	t.Helper()
	for _, side := range []struct {
		name string
		st   ConnectionState
	}{{"client", d.client}, {"server", d.server}} {
		if side.st.Resumed != resumed || side.st.Resumption != want || side.st.Negotiated != negotiated {
			t.Errorf("%s, %s: Resumed=%v Resumption=%v Negotiated=%v, want %v %v %v",
				which, side.name, side.st.Resumed, side.st.Resumption, side.st.Negotiated, resumed, want, negotiated)
		}
	}
	if resumed {
		return
	}
	// Who keeps what (docs/decisions.md 29).
	clientKeeps := want == nmID || want == nmTicket
	serverKeeps := want == nmID || want == nmCS
	if len(serverStores) > 0 {
		serverKeeps = serverStores[0]
	}
	if (d.client.ResumptionStateBytes > 0) != clientKeeps {
		t.Errorf("%s: client keeps %d bytes for %v", which, d.client.ResumptionStateBytes, want)
	}
	if (d.server.ResumptionStateBytes > 0) != serverKeeps {
		t.Errorf("%s: server keeps %d bytes for %v", which, d.server.ResumptionStateBytes, want)
	}
}

// nmCheckClientHello checks the offer in a ClientHello.
func nmCheckClientHello(t *testing.T, which string, o nmOffer, ch nmHello, wantResume bool, handle []byte) {
	t.Helper()
	if o.legacy() {
		if ch.resExt {
			t.Errorf("%s: a legacy client sent session_resumption_type", which)
		}
	} else {
		switch {
		case !ch.resExt:
			t.Errorf("%s: ClientHello without session_resumption_type", which)
		case !slices.Equal(ch.offer.Offered, o.types):
			t.Errorf("%s: offered %v, want %v", which, ch.offer.Offered, o.types)
		case !bytes.Equal(ch.offer.Handle, handle):
			t.Errorf("%s: handle %x, want %x", which, ch.offer.Handle, handle)
		case ch.offer.Resume != wantResume:
			t.Errorf("%s: resume_client_state=%v, want %v", which, ch.offer.Resume, wantResume)
		}
	}
	if ch.ticketExt != (o.asksTickets() && o.needsCache()) {
		t.Errorf("%s: SessionTicket extension present=%v, want %v", which, ch.ticketExt, o.asksTickets())
	}
}

// nmCheckFull checks a full handshake on the wire (spec §3.3).
func nmCheckFull(t *testing.T, o nmOffer, want negotiation.Type, d nmDialResult, handle []byte) {
	t.Helper()
	w := d.wire
	if !w.has(false, typeHelloVerifyRequest) {
		t.Errorf("full handshake without a cookie exchange")
	}
	chs, shs := w.clientHellos(t), w.serverHellos(t)
	if len(chs) == 0 || len(shs) != 1 {
		t.Fatalf("full handshake: %d ClientHellos, %d ServerHellos on the wire", len(chs), len(shs))
	}
	ch, sh := chs[len(chs)-1], shs[0]
	if len(ch.cookie) == 0 {
		t.Errorf("the ClientHello answered carries no cookie")
	}
	// A client_state client keeps nothing, so it always asks for its
	// ticket back, with a random 32-byte session ID (spec §4.2).
	resume := o.offers(nmCS)
	nmCheckClientHello(t, "full handshake", o, ch, resume, handle)
	if resume && len(ch.sessionID) != 32 {
		t.Errorf("full handshake: resume_client_state=1 with a %d-byte session_id", len(ch.sessionID))
	}
	if len(ch.ticket) != 0 {
		t.Errorf("full handshake: ClientHello carries a %d-byte ticket", len(ch.ticket))
	}
	if !resume && len(ch.sessionID) != 0 {
		t.Errorf("full handshake: ClientHello carries a %d-byte session_id", len(ch.sessionID))
	}

	// ServerHello.
	if o.legacy() {
		if sh.resExt {
			t.Errorf("ServerHello answers session_resumption_type to a legacy client")
		}
	} else if !sh.resExt {
		t.Errorf("ServerHello without session_resumption_type")
	} else {
		if sh.answer.Selected != want {
			t.Errorf("ServerHello selected %v, want %v", sh.answer.Selected, want)
		}
		if len(sh.answer.Ticket) != 0 {
			t.Errorf("full handshake: ServerHello hands back a %d-byte client_state ticket", len(sh.answer.Ticket))
		}
	}
	if len(ch.sessionID) > 0 && bytes.Equal(sh.sessionID, ch.sessionID) {
		t.Errorf("full handshake: ServerHello echoes the ClientHello's session_id")
	}
	if (len(sh.sessionID) > 0) != (want == nmID) {
		t.Errorf("ServerHello session_id is %d bytes with %v", len(sh.sessionID), want)
	}
	if want == nmID && len(sh.sessionID) != 32 {
		t.Errorf("ServerHello session_id is %d bytes, want 32", len(sh.sessionID))
	}
	if sh.ticketExt != (want == nmTicket) {
		t.Errorf("ServerHello SessionTicket extension present=%v with %v", sh.ticketExt, want)
	}
	if len(sh.ticket) != 0 {
		t.Errorf("ServerHello SessionTicket extension is not empty")
	}

	// NewSessionTicket: from the server for session_ticket, from the
	// client, before its ChangeCipherSpec, for client_state.
	srvNST, _ := w.tickets(t, false)
	cliNST, cliIdx := w.tickets(t, true)
	if (len(srvNST) > 0) != (want == nmTicket) {
		t.Errorf("server sent %d NewSessionTickets with %v", len(srvNST), want)
	}
	for _, m := range srvNST {
		if len(m.ticket) == 0 {
			t.Errorf("server's NewSessionTicket is empty")
		}
	}
	if (len(cliNST) > 0) != (want == nmCS) {
		t.Errorf("client sent %d NewSessionTickets with %v", len(cliNST), want)
	}
	if len(cliNST) == 1 {
		ccs := w.first(cliIdx[0], true, nmIsCCS)
		cke := w.messages(true, typeClientKeyExchange)
		if ccs < 0 || len(cke) == 0 || cke[0] > cliIdx[0] {
			t.Errorf("client's NewSessionTicket is not between its ClientKeyExchange and ChangeCipherSpec:%v", w)
		}
		if len(cliNST[0].ticket) == 0 {
			t.Errorf("client's NewSessionTicket is empty")
		}
	}
	if a := append(w.alerts(true), w.alerts(false)...); len(a) > 0 {
		t.Errorf("alerts on the wire: %v", a)
	}
}

// nmCheckResumed checks an abbreviated handshake by mechanism want.
func nmCheckResumed(t *testing.T, o nmOffer, want negotiation.Type, full, d nmDialResult, handle []byte) {
	t.Helper()
	w := d.wire
	if w.has(false, typeHelloVerifyRequest) {
		t.Errorf("resumption with a cookie exchange (docs/decisions.md 18 skips it)")
	}
	for _, typ := range []uint8{typeCertificate, typeServerKeyExchange, typeServerHelloDone} {
		if w.has(false, typ) {
			t.Errorf("resumption: the server sent %s", nmTypeName(typ))
		}
	}
	if w.has(true, typeClientKeyExchange) {
		t.Errorf("resumption: the client sent a ClientKeyExchange")
	}
	if d.client.HandshakeDatagramsSent != 2 || d.client.HandshakeDatagramsReceived != 1 {
		t.Errorf("resumption: %d/%d datagrams, want 2/1", d.client.HandshakeDatagramsSent, d.client.HandshakeDatagramsReceived)
	}
	chs, shs := w.clientHellos(t), w.serverHellos(t)
	if len(chs) != 1 || len(shs) != 1 {
		t.Fatalf("resumption: %d ClientHellos, %d ServerHellos", len(chs), len(shs))
	}
	ch, sh := chs[0], shs[0]
	fullSH := full.wire.serverHellos(t)[0]
	srvNST, _ := w.tickets(t, false)
	cliNST, _ := w.tickets(t, true)
	if len(srvNST) != 0 || len(cliNST) != 0 {
		t.Errorf("resumption: %d NewSessionTickets from the server, %d from the client", len(srvNST), len(cliNST))
	}
	nmCheckClientHello(t, "resumption", o, ch, want == nmCS, handle)
	if o.legacy() {
		if sh.resExt {
			t.Errorf("resumption: ServerHello answers a legacy client")
		}
	} else if !sh.resExt || sh.answer.Selected != want {
		t.Errorf("resumption: ServerHello answer %+v, want selected %v", sh.answer, want)
	}
	if !bytes.Equal(sh.sessionID, ch.sessionID) || len(ch.sessionID) == 0 {
		t.Errorf("resumption: ServerHello session_id %x does not echo the ClientHello's %x", sh.sessionID, ch.sessionID)
	}
	if sh.ticketExt {
		t.Errorf("resumption: ServerHello carries SessionTicket (a renewal was not due)")
	}
	switch want {
	case nmCS:
		fullNST, _ := full.wire.tickets(t, true)
		if len(ch.sessionID) != 32 {
			t.Errorf("client_state resumption: %d-byte session_id, want a random 32", len(ch.sessionID))
		}
		if len(ch.offer.Handle) != negotiation.HandleSize {
			t.Errorf("client_state resumption: %d-byte handle", len(ch.offer.Handle))
		}
		if len(ch.ticket) != 0 {
			t.Errorf("client_state resumption: ClientHello carries an RFC 5077 ticket")
		}
		if sh.answer == nil || len(sh.answer.Ticket) == 0 || len(fullNST) != 1 || !bytes.Equal(sh.answer.Ticket, fullNST[0].ticket) {
			t.Errorf("client_state resumption: the ServerHello does not hand back the ticket the client sent")
		}
	case nmID:
		if !bytes.Equal(ch.sessionID, fullSH.sessionID) {
			t.Errorf("session_id resumption: ClientHello session_id %x, want the cached %x", ch.sessionID, fullSH.sessionID)
		}
		if len(ch.ticket) != 0 {
			t.Errorf("session_id resumption: ClientHello carries a ticket")
		}
		if !bytes.Equal(d.client.SessionID, fullSH.sessionID) || !bytes.Equal(d.server.SessionID, fullSH.sessionID) {
			t.Errorf("session_id resumption: states name session %x / %x", d.client.SessionID, d.server.SessionID)
		}
	case nmTicket:
		fullNST, _ := full.wire.tickets(t, false)
		if len(fullNST) != 1 || !ch.ticketExt || !bytes.Equal(ch.ticket, fullNST[0].ticket) {
			t.Errorf("session_ticket resumption: ClientHello's SessionTicket (%d bytes) is not the issued ticket", len(ch.ticket))
		}
		if len(ch.sessionID) != 32 {
			t.Errorf("session_ticket resumption: %d-byte session_id next to the ticket, want a random 32", len(ch.sessionID))
		}
	}
	if sh.answer != nil && want != nmCS && len(sh.answer.Ticket) != 0 {
		t.Errorf("resumption by %v: ServerHello carries a client_state ticket", want)
	}
	if a := append(w.alerts(true), w.alerts(false)...); len(a) > 0 {
		t.Errorf("alerts on the wire: %v", a)
	}
}

// ---------------------------------------------------------------------------
// 2. client_state specifics

// nmOpStore is a mapStore that logs every operation.
type nmOpStore struct {
	*mapStore
	opsMu sync.Mutex
	ops   []nmOp
}

type nmOp struct {
	op    string // Get, Put, Delete
	key   string
	found bool
	value []byte
}

func (s *nmOpStore) log(op nmOp) {
	s.opsMu.Lock()
	defer s.opsMu.Unlock()
	s.ops = append(s.ops, op)
}

func (s *nmOpStore) Get(ctx context.Context, k []byte) ([]byte, error) {
	v, err := s.mapStore.Get(ctx, k)
	s.log(nmOp{op: "Get", key: string(k), found: err == nil, value: bytes.Clone(v)})
	return v, err
}

func (s *nmOpStore) Put(ctx context.Context, k, v []byte, ttl time.Duration) error {
	s.log(nmOp{op: "Put", key: string(k), value: bytes.Clone(v)})
	return s.mapStore.Put(ctx, k, v, ttl)
}

func (s *nmOpStore) Delete(ctx context.Context, k []byte) error {
	s.log(nmOp{op: "Delete", key: string(k)})
	return s.mapStore.Delete(ctx, k)
}

func (s *nmOpStore) take() []nmOp {
	s.opsMu.Lock()
	defer s.opsMu.Unlock()
	out := s.ops
	s.ops = nil
	return out
}

// TestClientStateOneRecordPerIdentity: the server keeps exactly one record
// per client identity, however often it dials.
func TestClientStateOneRecordPerIdentity(t *testing.T) {
	srv := nmStartServer(t, nmPSKServer([]negotiation.Type{nmCS}))
	relay := nmNewRelay(t, srv.Addr())
	handles := map[string][]byte{}
	for i, id := range []string{"alice", "alice", "alice", "bob", "bob", "alice"} {
		cfg := nmPSKClient(id, []negotiation.Type{nmCS})
		handles[id] = nmHandleOf(t, cfg)
		d := nmDialVia(t, srv, relay, cfg)
		resumed := i != 0 && i != 3
		if d.client.Resumed != resumed || d.server.Resumed != resumed {
			t.Errorf("dial %d (%s): resumed client=%v server=%v, want %v", i, id, d.client.Resumed, d.server.Resumed, resumed)
		}
		if string(d.server.PSKIdentity) != id {
			t.Errorf("dial %d: server sees identity %q, want %q", i, d.server.PSKIdentity, id)
		}
		want := 1
		if i >= 3 {
			want = 2
		}
		if n := nmRecords(srv.store); n != want {
			t.Errorf("after dial %d (%s): %d client_state records, want %d", i, id, n, want)
		}
	}
	if len(srv.store.m) != 2 {
		t.Errorf("store holds %d entries, want the 2 records only: %v", len(srv.store.m), nmStoreKeys(srv.store))
	}
	for id, h := range handles {
		rec, _ := nmRecord(t, srv.store, h)
		if rec.state.Peer.Type != ticketfmt.PSK || string(rec.state.Peer.PSKIdentity) != id {
			t.Errorf("record for %s is bound to %+v", id, rec.state.Peer)
		}
	}
}

func nmStoreKeys(s *mapStore) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ks []string
	for k := range s.m {
		ks = append(ks, fmt.Sprintf("%q", k))
	}
	slices.Sort(ks)
	return ks
}

// nmCheckRetry checks the wire of a dial whose client_state resumption the
// client refused with alert: ServerHello with the ticket, the client's
// fatal alert, then a fresh full handshake with resume_client_state=0.
func nmCheckRetry(t *testing.T, d nmDialResult, alert alertDescription, handedBack []byte) {
	nmCheckRetryStored(t, d, alert, handedBack, true)
}

// nmCheckRetryStored is nmCheckRetry; stored says whether the server keeps
// the retry's ticket.
func nmCheckRetryStored(t *testing.T, d nmDialResult, alert alertDescription, handedBack []byte, stored bool) {
	t.Helper()
	w := d.wire
	t.Logf("wire:%v", w)
	chs, shs := w.clientHellos(t), w.serverHellos(t)
	if len(chs) < 2 || len(shs) != 2 {
		t.Fatalf("%d ClientHellos and %d ServerHellos, want a resumption attempt and a full handshake", len(chs), len(shs))
	}
	first, accepted := chs[0], shs[0]
	if !first.resExt || !first.offer.Resume || len(first.sessionID) != 32 {
		t.Errorf("first ClientHello does not ask for the ticket back: %+v", first.offer)
	}
	if !bytes.Equal(accepted.sessionID, first.sessionID) || accepted.answer == nil ||
		accepted.answer.Selected != nmCS || len(accepted.answer.Ticket) == 0 {
		t.Errorf("first ServerHello does not accept the client_state resumption: %+v", accepted.answer)
	} else if handedBack != nil && !bytes.Equal(accepted.answer.Ticket, handedBack) {
		t.Errorf("the ServerHello handed back another ticket than the stored one")
	}
	if w.has(false, typeHelloVerifyRequest) && w.messages(false, typeHelloVerifyRequest)[0] < accepted.index {
		t.Errorf("cookie exchange before the accepted resumption")
	}
	alerts := w.alerts(true)
	if len(alerts) != 1 || !bytes.Equal(alerts[0], []byte{byte(alertLevelFatal), byte(alert)}) {
		t.Fatalf("client alerts %v, want one fatal %v", alerts, alert)
	}
	alertAt := w.first(0, true, func(e nmEvent) bool { return e.epoch == 0 && e.content == recordAlert })
	if alertAt < accepted.index {
		t.Errorf("the alert precedes the ServerHello")
	}
	if sa := w.alerts(false); len(sa) != 0 {
		t.Errorf("server sent alerts %v", sa)
	}
	for _, ch := range chs[1:] {
		if ch.index < alertAt {
			t.Errorf("second ClientHello before the alert")
		}
		if !ch.resExt || ch.offer.Resume || len(ch.sessionID) != 0 {
			t.Errorf("retry ClientHello: resume=%v session_id %d bytes, want resume_client_state=0 and no session_id",
				ch.offer != nil && ch.offer.Resume, len(ch.sessionID))
		}
	}
	if hv := w.messages(false, typeHelloVerifyRequest); len(hv) == 0 || hv[0] < alertAt {
		t.Errorf("the retry has no cookie exchange")
	}
	fresh := shs[1]
	if len(fresh.sessionID) != 0 || fresh.ticketExt || fresh.answer == nil || fresh.answer.Selected != nmCS || len(fresh.answer.Ticket) != 0 {
		t.Errorf("retry ServerHello: session_id %x, answer %+v; want a fresh client_state session", fresh.sessionID, fresh.answer)
	}
	nst, idx := w.tickets(t, true)
	if len(nst) != 1 || idx[0] < alertAt || w.first(idx[0], true, nmIsCCS) < 0 {
		t.Errorf("the retry's client NewSessionTicket is missing or not before the ChangeCipherSpec")
	}
	nmCheckStates(t, "retry", d, false, nmCS, true, stored)
}

// TestClientStateFailureRows covers the client_state rows of spec §6.
func TestClientStateFailureRows(t *testing.T) {
	csOnly := []negotiation.Type{nmCS}

	t.Run("a/tampered ticket", func(t *testing.T) {
		t.Parallel()
		ops := &nmOpStore{mapStore: newMapStore()}
		scfg := nmPSKServer(csOnly)
		scfg.SessionStore = ops
		srv := nmStartServer(t, scfg)
		srv.store = ops.mapStore
		relay := nmNewRelay(t, srv.Addr())
		alice := func() *Config { return nmPSKClient("alice", csOnly) }
		h := nmHandleOf(t, alice())
		nmDialVia(t, srv, relay, alice())
		_, raw := nmRecord(t, srv.store, h)
		// ClientStateRecord: version(1) || uint16 len || client_ticket ...;
		// flip a byte inside the sealed part of client_ticket.
		tampered := bytes.Clone(raw)
		tampered[3+ticketfmt.KeyNameSize+ticketfmt.NonceSize+4] ^= 0x5a
		nmStorePut(srv.store, clientStateKeyName(h), tampered)
		rec, _ := nmRecord(t, srv.store, h)
		ops.take()

		d := nmDialVia(t, srv, relay, alice())
		nmCheckRetry(t, d, alertDecryptError, rec.ticket)

		// The alert deleted nothing: every read of the record until the
		// new full handshake replaced it found the tampered one.
		key := string(clientStateKeyName(h))
		puts := 0
		for _, op := range ops.take() {
			if op.key != key {
				continue
			}
			switch op.op {
			case "Delete":
				t.Errorf("the server deleted the record")
			case "Get":
				if puts == 0 && (!op.found || !bytes.Equal(op.value, tampered)) {
					t.Errorf("a read before the replacement did not find the tampered record (found=%v)", op.found)
				}
			case "Put":
				puts++
			}
		}
		if puts != 1 {
			t.Errorf("%d writes of the record, want 1 (the retry's)", puts)
		}
		if _, now := nmRecord(t, srv.store, h); bytes.Equal(now, tampered) {
			t.Errorf("the record was not replaced")
		}
		if again := nmDialVia(t, srv, relay, alice()); !again.client.Resumed || !again.server.Resumed {
			t.Errorf("the replaced record does not resume")
		}
		if n := nmRecords(srv.store); n != 1 {
			t.Errorf("%d records, want 1", n)
		}
	})

	t.Run("b/ticket sealed by a foreign key", func(t *testing.T) {
		t.Parallel()
		srv := nmStartServer(t, nmPSKServer(csOnly))
		relay := nmNewRelay(t, srv.Addr())
		alice := func() *Config { return nmPSKClient("alice", csOnly) }
		h := nmHandleOf(t, alice())
		nmDialVia(t, srv, relay, alice())
		rec, _ := nmRecord(t, srv.store, h)
		aliceKey, err := alice().clientStateKey()
		if err != nil {
			t.Fatal(err)
		}
		k, err := ticketfmt.NewKey(aliceKey[:])
		if err != nil {
			t.Fatal(err)
		}
		plain, err := k.Open(rec.ticket, ticketfmt.LabelClient)
		if err != nil {
			t.Fatalf("alice's own ticket does not open with her key: %v", err)
		}
		other, err := ticketfmt.NewKey([]byte("another client!!"))
		if err != nil {
			t.Fatal(err)
		}
		foreign, err := other.Seal(plain, ticketfmt.LabelClient)
		if err != nil {
			t.Fatal(err)
		}
		v, err := (&clientStateRecord{ticket: foreign, state: rec.state}).marshal()
		if err != nil {
			t.Fatal(err)
		}
		nmStorePut(srv.store, clientStateKeyName(h), v)

		d := nmDialVia(t, srv, relay, alice())
		nmCheckRetry(t, d, alertDecryptError, foreign)
		if now, _ := nmRecord(t, srv.store, h); bytes.Equal(now.ticket, foreign) {
			t.Errorf("the foreign ticket was not replaced")
		}
		if again := nmDialVia(t, srv, relay, alice()); !again.client.Resumed {
			t.Errorf("the replaced record does not resume")
		}
	})

	t.Run("c/expired ticket", func(t *testing.T) {
		t.Parallel()
		srv := nmStartServer(t, nmPSKServer(csOnly))
		relay := nmNewRelay(t, srv.Addr())
		h := nmHandleOf(t, nmPSKClient("alice", csOnly))
		nmDialVia(t, srv, relay, nmPSKClient("alice", csOnly))
		rec, _ := nmRecord(t, srv.store, h)
		// The client's clock is a day on: its ticket (24 h) has expired,
		// while the server still holds the record.
		later := func() *Config {
			c := nmPSKClient("alice", csOnly)
			c.Time = func() time.Time { return time.Now().Add(25 * time.Hour) }
			return c
		}
		d := nmDialVia(t, srv, relay, later())
		nmCheckRetry(t, d, alertHandshakeFailure, rec.ticket)
		if again := nmDialVia(t, srv, relay, later()); !again.client.Resumed {
			t.Errorf("the new ticket does not resume")
		}
	})

	t.Run("d/servers of one cluster, and servers of another name", func(t *testing.T) {
		t.Parallel()
		shared := newMapStore()
		xcfg, ycfg := nmPSKServer(csOnly), nmPSKServer(csOnly)
		xcfg.SessionStore, ycfg.SessionStore = shared, shared
		x, y := nmStartServer(t, xcfg), nmStartServer(t, ycfg)
		rx, ry := nmNewRelay(t, x.Addr()), nmNewRelay(t, y.Addr())
		// A session belongs to the server's identity (here the PSK), not its
		// address: x and y, sharing the store, are one server to alice.
		alice := func(name string) *Config { c := nmPSKClient("alice", csOnly); c.ServerName = name; return c }
		nmDialVia(t, x, rx, alice(""))
		if d := nmDialVia(t, y, ry, alice("")); !d.client.Resumed {
			t.Fatalf("a session made with x does not resume at y of the same cluster:%v", d.wire)
		}
		// Named servers are different servers: the handle differs, so y
		// finds no record and a full handshake follows without an
		// aborted attempt.
		nmDialVia(t, x, rx, alice("x.example"))
		d := nmDialVia(t, y, ry, alice("y.example"))
		t.Logf("wire:%v", d.wire)
		if d.client.Resumed || len(d.wire.clientHellos(t)) > 2 || len(d.wire.serverHellos(t)) != 1 || len(d.wire.alerts(true)) != 0 {
			t.Fatalf("another server's name: resumed=%v, %d ClientHellos, %d ServerHellos, client alerts %v; want one full handshake",
				d.client.Resumed, len(d.wire.clientHellos(t)), len(d.wire.serverHellos(t)), d.wire.alerts(true))
		}
		if again := nmDialVia(t, y, ry, alice("y.example")); !again.client.Resumed {
			t.Errorf("the ticket made with y does not resume at y")
		}
	})

	t.Run("e/another identity with the same ticket key gets a handle of its own", func(t *testing.T) {
		t.Parallel()
		srv := nmStartServer(t, nmPSKServer(csOnly))
		relay := nmNewRelay(t, srv.Addr())
		alice := func() *Config { return nmPSKClient("alice", csOnly) }
		aliceKey, err := alice().clientStateKey()
		if err != nil {
			t.Fatal(err)
		}
		h := nmHandleOf(t, alice())
		nmDialVia(t, srv, relay, alice())
		_, before := nmRecord(t, srv.store, h)

		// bob holds alice's ticket key, but his handle names him: it can
		// neither reach nor replace alice's record.
		bob := nmPSKClient("bob", csOnly)
		bob.ClientStateKey = aliceKey[:]
		if bytes.Equal(nmHandleOf(t, bob), h) {
			t.Fatal("bob's handle is alice's")
		}
		d := nmDialVia(t, srv, relay, bob)
		if d.client.Resumed || string(d.server.PSKIdentity) != "bob" || len(d.wire.alerts(true)) != 0 {
			t.Errorf("bob: resumed=%v identity %q alerts %v, want a plain full handshake as bob", d.client.Resumed, d.server.PSKIdentity, d.wire.alerts(true))
		}
		rec, after := nmRecord(t, srv.store, h)
		if !bytes.Equal(after, before) || string(rec.state.Peer.PSKIdentity) != "alice" {
			t.Errorf("bob's full handshake changed alice's record (now bound to %q)", rec.state.Peer.PSKIdentity)
		}
		again := nmDialVia(t, srv, relay, alice())
		if !again.client.Resumed || string(again.server.PSKIdentity) != "alice" {
			t.Errorf("alice no longer resumes (resumed=%v, identity %q)", again.client.Resumed, again.server.PSKIdentity)
		}
	})

	t.Run("f/no record or no client_state: full handshake, selection renegotiated", func(t *testing.T) {
		t.Parallel()
		shared := newMapStore()
		var serverClock atomic.Int64 // offset added to the server's clock
		pcfg := nmPSKServer(csOnly)
		pcfg.SessionStore = shared
		pcfg.Time = func() time.Time { return time.Now().Add(time.Duration(serverClock.Load())) }
		qcfg := nmPSKServer([]negotiation.Type{nmID})
		qcfg.SessionStore = shared
		p, q := nmStartServer(t, pcfg), nmStartServer(t, qcfg)
		rp, rq := nmNewRelay(t, p.Addr()), nmNewRelay(t, q.Addr())
		offer := []negotiation.Type{nmCS, nmID}
		alice := func() *Config {
			c := nmPSKClient("alice", offer)
			c.ClientSessionCache = NewLRUClientSessionCache(4)
			return c
		}
		h := nmHandleOf(t, alice())
		check := func(which string, d nmDialResult, want negotiation.Type) {
			t.Helper()
			t.Logf("%s:%v", which, d.wire)
			nmCheckStates(t, which, d, false, want, true)
			nmCheckFull(t, nmOffer{types: offer}, want, d, h)
		}

		// No record yet: resume_client_state=1 gets a full handshake.
		check("no record", nmDialVia(t, p, rp, alice()), nmCS)
		_, stored := nmRecord(t, shared, h)
		// A server whose policy lacks client_state never looks the record
		// up: full handshake, session_id selected.
		check("policy without client_state", nmDialVia(t, q, rq, alice()), nmID)
		if _, now := nmRecord(t, shared, h); !bytes.Equal(now, stored) {
			t.Errorf("the record changed")
		}
		// The record expired on the server's clock.
		serverClock.Store(int64(25 * time.Hour))
		check("record expired at the server", nmDialVia(t, p, rp, alice()), nmCS)
		serverClock.Store(0)
		// The record's suite is no longer offered.
		gcm := alice()
		gcm.CipherSuites = []CipherSuiteID{TLS_PSK_WITH_AES_128_GCM_SHA256}
		d := nmDialVia(t, p, rp, gcm)
		check("suite not offered", d, nmCS)
		if d.client.CipherSuite != TLS_PSK_WITH_AES_128_GCM_SHA256 {
			t.Errorf("suite %v", d.client.CipherSuite)
		}
	})
}

// ---------------------------------------------------------------------------
// 3. Loss

// nmLossPaths: each negotiated path, with the server's policy allowing only
// it.
var nmLossPaths = []negotiation.Type{nmID, nmTicket, nmCS, nmNone}

// TestNegotiatedPathsUnderLoss runs a full handshake and a resumption of
// every negotiated path through a proxy that drops 20%, duplicates 10% and
// reorders 10% of the datagrams each way, with several seeds.
func TestNegotiatedPathsUnderLoss(t *testing.T) {
	for _, path := range nmLossPaths {
		for seed := int64(1); seed <= 4; seed++ {
			t.Run(fmt.Sprintf("%v/seed%d", path, seed), func(t *testing.T) {
				t.Parallel()
				scfg := lossyTimers(nmPSKServer([]negotiation.Type{path}))
				srv := nmStartServer(t, scfg)
				proxy, err := lossyproxy.New(srv.Addr().(*net.UDPAddr), lossyproxy.Config{Drop: 0.2, Duplicate: 0.1, Reorder: 0.1, Seed: seed})
				if err != nil {
					t.Fatal(err)
				}
				defer proxy.Close()
				var cache ClientSessionCache
				if path == nmID || path == nmTicket {
					cache = NewLRUClientSessionCache(4)
				}
				id := fmt.Sprintf("loss-%v-%d", path, seed)
				newClient := func() *Config {
					c := lossyTimers(nmPSKClient(id, []negotiation.Type{path}))
					c.ClientSessionCache = cache
					return c
				}
				for i, resumed := range []bool{false, path != nmNone, path != nmNone} {
					st := nmDialLossy(t, proxy.Addr(), newClient())
					if st.Resumed != resumed || st.Resumption != path || !st.Negotiated {
						t.Errorf("dial %d: Resumed=%v Resumption=%v Negotiated=%v, want %v %v", i, st.Resumed, st.Resumption, st.Negotiated, resumed, path)
					}
				}
				if path == nmCS && nmRecords(srv.store) != 1 {
					t.Errorf("%d client_state records, want 1", nmRecords(srv.store))
				}
				s := proxy.Stats()
				t.Logf("dropped %d/%d, duplicated %d/%d, reordered %d/%d", s.ToServer.Dropped, s.ToClient.Dropped,
					s.ToServer.Duplicated, s.ToClient.Duplicated, s.ToServer.Reordered, s.ToClient.Reordered)
			})
		}
	}
}

// nmDialLossy dials through a lossy path within a bound and echoes once.
func nmDialLossy(t *testing.T, addr *net.UDPAddr, cfg *Config) ConnectionState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	start := time.Now()
	c, err := nmDial(ctx, t, addr, cfg)
	if err != nil {
		t.Fatalf("handshake after %v: %v", time.Since(start).Round(time.Millisecond), err)
	}
	defer c.Close()
	echoUnderLoss(t, c, "through the storm")
	return c.ConnectionState()
}

// TestNegotiatedLostFlights drops chosen flights once: the client_state
// client's flight that carries its NewSessionTicket (in a full handshake
// and in a refreshing resumption), and the server's ServerHello flight of
// each resumption.
func TestNegotiatedLostFlights(t *testing.T) {
	cases := []struct {
		name  string
		path  negotiation.Type
		dir   lossyproxy.Direction
		typ   uint8 // drop the first datagram in dir carrying this handshake type
		dial  int   // in this dial (0 = full handshake)
		later time.Duration
	}{
		{"client_state/full/client NewSessionTicket flight", nmCS, lossyproxy.ToServer, typeNewSessionTicket, 0, 0},
		{"client_state/refresh/client NewSessionTicket flight", nmCS, lossyproxy.ToServer, typeNewSessionTicket, 1, 13 * time.Hour},
		{"client_state/resumption ServerHello flight", nmCS, lossyproxy.ToClient, typeServerHello, 1, 0},
		{"session_id/resumption ServerHello flight", nmID, lossyproxy.ToClient, typeServerHello, 1, 0},
		{"session_ticket/resumption ServerHello flight", nmTicket, lossyproxy.ToClient, typeServerHello, 1, 0},
	}
	for _, tcase := range cases {
		t.Run(tcase.name, func(t *testing.T) {
			t.Parallel()
			srv := nmStartServer(t, lossyTimers(nmPSKServer([]negotiation.Type{tcase.path})))
			var armed, dropped atomic.Bool
			var clientNSTs atomic.Int32
			proxy, err := lossyproxy.New(srv.Addr().(*net.UDPAddr), lossyproxy.Config{
				Filter: func(dir lossyproxy.Direction, _ int, d []byte) lossyproxy.Verdict {
					types := nmHandshakeTypes(d)
					if dir == lossyproxy.ToServer && slices.Contains(types, typeNewSessionTicket) {
						clientNSTs.Add(1)
					}
					if armed.Load() && dir == tcase.dir && slices.Contains(types, tcase.typ) && !dropped.Swap(true) {
						return lossyproxy.Drop
					}
					return lossyproxy.Pass
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer proxy.Close()
			var cache ClientSessionCache
			if tcase.path != nmCS {
				cache = NewLRUClientSessionCache(4)
			}
			newClient := func(later time.Duration) *Config {
				c := lossyTimers(nmPSKClient("lost", []negotiation.Type{tcase.path}))
				c.ClientSessionCache = cache
				if later != 0 {
					c.Time = func() time.Time { return time.Now().Add(later) }
				}
				return c
			}
			var oldTicket []byte
			for i := 0; i < 3; i++ {
				later := time.Duration(0)
				if i >= tcase.dial {
					later = tcase.later
				}
				cfg := newClient(later)
				armed.Store(i == tcase.dial)
				if i == 1 && tcase.path == nmCS {
					rec, _ := nmRecord(t, srv.store, nmHandleOf(t, cfg))
					oldTicket = rec.ticket
				}
				nstBefore := clientNSTs.Load()
				st := nmDialLossy(t, proxy.Addr(), cfg)
				armed.Store(false)
				if want := i > 0; st.Resumed != want || st.Resumption != tcase.path {
					t.Errorf("dial %d: Resumed=%v Resumption=%v, want %v %v", i, st.Resumed, st.Resumption, want, tcase.path)
				}
				if tcase.later != 0 && i == 2 && clientNSTs.Load() != nstBefore {
					t.Errorf("dial 2 refreshed the already refreshed ticket again")
				}
			}
			if !dropped.Load() {
				t.Fatalf("no datagram with %s went %v", nmTypeName(tcase.typ), tcase.dir)
			}
			if tcase.path == nmCS {
				if n := nmRecords(srv.store); n != 1 {
					t.Errorf("%d client_state records, want 1", n)
				}
				if tcase.later != 0 {
					rec, _ := nmRecord(t, srv.store, nmHandleOf(t, newClient(0)))
					if bytes.Equal(rec.ticket, oldTicket) {
						t.Errorf("the refreshed ticket was not stored")
					}
				}
			}
			if got := proxy.Stats().Dir(tcase.dir).Dropped; got != 1 {
				t.Errorf("proxy dropped %d datagrams, want 1", got)
			}
		})
	}
}

// TestNegotiatedResumptionLateClientHelloCopy: a resumption's ServerHello flight is
// lost, the client retransmits its ClientHello, and that copy reaches the
// server only after the resumed handshake completed (the network held it).
// The stale copy proves nothing about the client's reachability and must not
// tear down the established association (RFC 6347 §4.2.8): the connection
// keeps working.
func TestNegotiatedResumptionLateClientHelloCopy(t *testing.T) {
	for _, path := range []negotiation.Type{nmID, nmTicket, nmCS} {
		t.Run(path.String(), func(t *testing.T) {
			t.Parallel()
			// The client's timer fires well before the server's, so that it
			// retransmits its ClientHello before the server repeats its
			// flight.
			scfg := lossyTimers(nmPSKServer([]negotiation.Type{path}))
			scfg.RetransmitInterval = 200 * time.Millisecond
			srv := nmStartServer(t, scfg)
			var armed, shDropped, chHeld atomic.Bool
			const hold = 300 * time.Millisecond
			proxy, err := lossyproxy.New(srv.Addr().(*net.UDPAddr), lossyproxy.Config{
				Reorder: 1, ReorderDelay: hold,
				Filter: func(dir lossyproxy.Direction, _ int, d []byte) lossyproxy.Verdict {
					if !armed.Load() {
						return lossyproxy.Pass
					}
					types := nmHandshakeTypes(d)
					switch {
					case dir == lossyproxy.ToClient && slices.Contains(types, typeServerHello) && !shDropped.Swap(true):
						return lossyproxy.Drop
					case dir == lossyproxy.ToServer && slices.Contains(types, typeClientHello) && shDropped.Load() && !chHeld.Swap(true):
						return lossyproxy.Default // Reorder 1: held back
					}
					return lossyproxy.Pass
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer proxy.Close()
			cache := NewLRUClientSessionCache(4)
			newClient := func() *Config {
				c := lossyTimers(nmPSKClient("late", []negotiation.Type{path}))
				c.RetransmitInterval = 20 * time.Millisecond
				if path != nmCS {
					c.ClientSessionCache = cache
				}
				return c
			}
			nmDialLossy(t, proxy.Addr(), newClient())
			armed.Store(true)
			c, err := nmDial(context.Background(), t, proxy.Addr(), newClient())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			heldAt := time.Now()
			if st := c.ConnectionState(); !st.Resumed || st.Resumption != path {
				t.Fatalf("Resumed=%v Resumption=%v", st.Resumed, st.Resumption)
			}
			if err := nmEcho(c, "before the late copy", 20); err != nil {
				t.Fatalf("before the late copy: %v", err)
			}
			if !chHeld.Load() {
				t.Fatal("no ClientHello retransmission was held back")
			}
			time.Sleep(time.Until(heldAt.Add(hold + 100*time.Millisecond)))
			if err := nmEcho(c, "after the late copy", 20); err != nil {
				t.Errorf("the resumed connection died when a late copy of its ClientHello reached the server: %v", err)
			}
		})
	}
}

// nmEcho sends msg until its echo comes back, at most attempts times.
func nmEcho(c *Conn, msg string, attempts int) error {
	buf := make([]byte, 2048)
	for range attempts {
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := c.Read(buf)
		if err == nil {
			if string(buf[:n]) != msg {
				return fmt.Errorf("echo %q, want %q", buf[:n], msg)
			}
			return nil
		}
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			return err
		}
	}
	return fmt.Errorf("no echo after %d attempts", attempts)
}

// TestNegotiatedResumptionReplayedClientHello: an earlier
// connection's resuming ClientHello, replayed from a live connection's
// address (anyone on the path can capture one and spoof the address), must
// not tear down the live association: the replay proves no reachability
// (RFC 6347 §4.2.8) and the server skips the cookie for it.
func TestNegotiatedResumptionReplayedClientHello(t *testing.T) {
	for _, path := range []negotiation.Type{nmID, nmTicket, nmCS} {
		t.Run(path.String(), func(t *testing.T) {
			t.Parallel()
			srv := nmStartServer(t, nmPSKServer([]negotiation.Type{path}))
			relay := nmNewRelay(t, srv.Addr())
			cache := NewLRUClientSessionCache(4)
			newClient := func() *Config {
				c := nmPSKClient("replayed", []negotiation.Type{path})
				if path != nmCS {
					c.ClientSessionCache = cache
				}
				return c
			}
			nmDialVia(t, srv, relay, newClient())
			// An earlier resumption, whose ClientHello is captured.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			old, err := nmDial(ctx, t, relay.Addr(), newClient())
			if err != nil {
				t.Fatal(err)
			}
			echoOnce(t, old, "earlier")
			oldPort := old.LocalAddr().(*net.UDPAddr).Port
			old.Close()
			var captured []byte
			for _, d := range relay.datagrams(oldPort) {
				if d.fromClient && slices.Contains(nmHandshakeTypes(d.data), typeClientHello) {
					captured = d.data
					break
				}
			}
			if captured == nil {
				t.Fatal("no ClientHello captured")
			}
			live, err := nmDial(ctx, t, relay.Addr(), newClient())
			if err != nil {
				t.Fatal(err)
			}
			defer live.Close()
			if !live.ConnectionState().Resumed {
				t.Fatal("the live connection did not resume")
			}
			echoOnce(t, live, "live")
			if err := relay.inject(live.LocalAddr().(*net.UDPAddr).Port, captured); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			if err := nmEcho(live, "after the replay", 10); err != nil {
				t.Errorf("the live association died when a replayed resuming ClientHello arrived from its address: %v", err)
			}
		})
	}
}

// TestNegotiatedResumptionDuplicatedClientHello: the network duplicates a
// resuming ClientHello (both copies arrive back to back, before the server
// answered either). The server must run one handshake for it: a second one
// would answer with another ServerHello and replace the first, whose
// ServerHello the client may already have completed on, leaving the client
// with a connection the server no longer has.
func TestNegotiatedResumptionDuplicatedClientHello(t *testing.T) {
	for _, path := range []negotiation.Type{nmID, nmTicket, nmCS} {
		t.Run(path.String(), func(t *testing.T) {
			t.Parallel()
			srv := nmStartServer(t, lossyTimers(nmPSKServer([]negotiation.Type{path})))
			var armed atomic.Bool
			var randomsMu sync.Mutex
			randoms := map[[32]byte]bool{} // of the ServerHellos of one round
			proxy, err := lossyproxy.New(srv.Addr().(*net.UDPAddr), lossyproxy.Config{
				Duplicate: 1,
				Filter: func(dir lossyproxy.Direction, _ int, d []byte) lossyproxy.Verdict {
					if dir == lossyproxy.ToClient {
						for _, e := range nmDecode([]nmDatagram{{data: d}}).events {
							var sh serverHelloMsg
							if e.hsType == typeServerHello && e.body != nil && sh.unmarshal(e.body) == nil {
								randomsMu.Lock()
								randoms[sh.random] = true
								randomsMu.Unlock()
							}
						}
					}
					if armed.Load() && dir == lossyproxy.ToServer && slices.Contains(nmHandshakeTypes(d), typeClientHello) {
						return lossyproxy.Default // Duplicate 1: sent twice
					}
					return lossyproxy.Pass
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer proxy.Close()
			cache := NewLRUClientSessionCache(4)
			newClient := func() *Config {
				c := lossyTimers(nmPSKClient("dup", []negotiation.Type{path}))
				if path != nmCS {
					c.ClientSessionCache = cache
				}
				return c
			}
			nmDialLossy(t, proxy.Addr(), newClient())
			armed.Store(true)
			failures := 0
			const rounds = 30
			for i := 0; i < rounds; i++ {
				randomsMu.Lock()
				clear(randoms)
				randomsMu.Unlock()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				c, err := nmDial(ctx, t, proxy.Addr(), newClient())
				cancel()
				if err != nil {
					t.Fatalf("round %d: %v", i, err)
				}
				if st := c.ConnectionState(); !st.Resumed {
					t.Errorf("round %d: not resumed", i)
				}
				if err := nmEcho(c, "duplicated hello", 10); err != nil {
					failures++
					t.Logf("round %d: %v", i, err)
				}
				randomsMu.Lock()
				if n := len(randoms); n != 1 {
					t.Errorf("round %d: the server answered the one ClientHello with %d ServerHellos of different randoms (%d handshakes)", i, n, n)
				}
				randomsMu.Unlock()
				c.Close()
			}
			if failures > 0 {
				t.Errorf("%d of %d resumed connections were dead: a duplicated resuming ClientHello started two server handshakes", failures, rounds)
			}
		})
	}
}
